import { inlineAgentSuite } from './inline-agent.js';

inlineAgentSuite('nft');
