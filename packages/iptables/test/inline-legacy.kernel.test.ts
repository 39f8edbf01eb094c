import { inlineAgentSuite } from './inline-agent.js';

inlineAgentSuite('legacy');
