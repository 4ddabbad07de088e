// Structured logs: one JSON object per line (`--log-format json`, for log shippers) or one readable
// line per record (default). Every record carries a level, a message and flat fields.
export type LogFormat = 'json' | 'pretty';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Where lines go; stderr by default so stdout stays free for command output. */
  write?: (line: string) => void;
}

export class Logger {
  private readonly format: LogFormat;
  private readonly min: number;
  private readonly write: (line: string) => void;

  constructor(
    options: LoggerOptions = {},
    private readonly fields: LogFields = {},
  ) {
    this.format = options.format ?? 'pretty';
    this.min = LEVELS[options.level ?? 'info'];
    this.write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** A logger that adds `fields` to every record (e.g. the job id). */
  child(fields: LogFields): Logger {
    return new Logger(
      { format: this.format, level: levelOf(this.min), write: this.write },
      { ...this.fields, ...fields },
    );
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (LEVELS[level] < this.min) return;
    const all = { ...this.fields, ...fields };
    const time = new Date().toISOString();
    if (this.format === 'json') {
      this.write(JSON.stringify({ time, level, msg, ...all }, jsonSafe));
      return;
    }
    const extra = Object.entries(all)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v, jsonSafe)}`)
      .join(' ');
    this.write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? ` ${extra}` : ''}`);
  }
}

function levelOf(n: number): LogLevel {
  return (Object.entries(LEVELS).find(([, v]) => v === n)?.[0] ?? 'info') as LogLevel;
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === 'bigint') return value.toString();
  return value;
}
