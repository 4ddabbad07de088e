// `cgrpo <command> ...`: each command lives in its own module under ./commands and is loaded lazily,
// so `cgrpo verify` does not pay for the plugin sandbox and vice versa.
type Command = (args: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  plugins: {
    summary: 'author, test and publish sandboxed plugins',
    load: () => import('./commands/plugins').then((m) => (args: string[]) => m.plugins(args)),
  },
  verify: {
    summary: 'run a built-in verifier over a JSONL file (no training)',
    load: () => import('./commands/verify').then((m) => (args: string[]) => m.verify(args)),
  },
  critique: {
    summary: 'run a built-in critic over a JSONL file (no training)',
    load: () => import('./commands/critique').then((m) => (args: string[]) => m.critique(args)),
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return ['usage: cgrpo <command> [options]', '', 'commands:', ...lines].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`cgrpo: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return (await command.load())(rest);
}
