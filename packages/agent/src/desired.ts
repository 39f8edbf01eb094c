// Load + compile: the one path from files on disk to a DesiredState, shared by every command.
import { compile, type DesiredState, type LoadedInputs } from '@dnsplane/core';

export interface CompiledInputs {
  readonly inputs: LoadedInputs;
  readonly state: DesiredState;
}

/** Throws InvalidInputError (every problem, one per line) when the input is bad. */
export async function loadAndCompile(
  load: (configPath: string) => Promise<LoadedInputs>,
  configPath: string,
): Promise<CompiledInputs> {
  const inputs = await load(configPath);
  const state = compile({ config: inputs.config, policies: inputs.policies, endpoints: inputs.endpoints });
  return { inputs, state };
}

/** The config path: -c, else $DNSPLANE_CONFIG, else ./dnsplane.yaml. */
export function configPathFrom(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  return flag ?? (env['DNSPLANE_CONFIG'] || './dnsplane.yaml');
}

/** "1 policy, 2 endpoints, 0 domain sets". */
export function describeCounts(counts: { readonly policies: number; readonly endpoints: number; readonly domainSets: number }): string {
  const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;
  return [
    plural(counts.policies, 'policy', 'policies'),
    plural(counts.endpoints, 'endpoint', 'endpoints'),
    plural(counts.domainSets, 'domain set', 'domain sets'),
  ].join(', ');
}

/** The counts of a desired state, for summaries and logs. */
export function stateCounts(state: DesiredState): { policies: number; endpoints: number; domainSets: number } {
  return { policies: state.policies.length, endpoints: state.endpoints.length, domainSets: state.domainSets.length };
}
