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
