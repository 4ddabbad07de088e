// Shaping functions are declarative expressions over the token probability `p` and named numeric
// params (`p / (p + gamma)` by default). They are parsed here, never executed as code: the runner
// compiles the AST into engine ops (compileShaping, gpu-runner/src/job/loss-graph.ts) so the engine
// differentiates them, and the evaluator below is the CPU reference its gradients are tested against.
//
// Grammar (precedence low → high; `^` is right-associative and binds tighter than unary minus,
// so `-p^2` is `-(p^2)` and `2^-1` is `2^(-1)`):
//   expr    := sum
//   sum     := product (('+' | '-') product)*
//   product := unary (('*' | '×' | '/' | '÷') unary)*
//   unary   := ('-' | '+' | '−') unary | power
//   power   := primary (('^' | '**') unary)?
//   primary := number | 'p' | param | constant | fn '(' expr (',' expr)* ')' | '(' expr ')'
//   fn      := exp | log | sqrt | min | max | clip      constant := pi | e

export type ShapingFunctionName = 'exp' | 'log' | 'sqrt' | 'min' | 'max' | 'clip';
export type ShapingBinaryOp = '+' | '-' | '*' | '/' | '^';

/** Parsed shaping expression. `pos` is the 0-based character offset of the node in the source. */
export type ShapingAst =
  | { type: 'number'; value: number; pos: number }
  | { type: 'p'; pos: number }
  | { type: 'param'; name: string; pos: number }
  | { type: 'neg'; arg: ShapingAst; pos: number }
  | { type: 'binary'; op: ShapingBinaryOp; left: ShapingAst; right: ShapingAst; pos: number }
  | { type: 'call'; fn: ShapingFunctionName; args: ShapingAst[]; pos: number };

export type ParseShapingResult =
  | { ok: true; ast: ShapingAst }
  | { ok: false; position: number; message: string };

export const DEFAULT_SHAPING_EXPRESSION = 'p / (p + gamma)';
export const DEFAULT_SHAPING_PARAMS: Readonly<Record<string, number>> = Object.freeze({ gamma: 0.1 });

/** Function name → accepted argument count. */
export const SHAPING_FUNCTIONS: Readonly<Record<ShapingFunctionName, number>> = Object.freeze({
  exp: 1,
  log: 1,
  sqrt: 1,
  min: 2,
  max: 2,
  clip: 3,
});

export const SHAPING_CONSTANTS: Readonly<Record<string, number>> = Object.freeze({ pi: Math.PI, e: Math.E });

const MAX_SOURCE_LENGTH = 500;
const MAX_DEPTH = 64;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

class ShapingSyntaxError extends Error {
  constructor(
    readonly position: number,
    message: string,
  ) {
    super(message);
  }
}

type Token =
  | { kind: 'number'; value: number; pos: number; text: string }
  | { kind: 'ident'; name: string; pos: number }
  | { kind: 'op'; op: string; pos: number }
  | { kind: 'end'; pos: number };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const number = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(src.slice(i));
    if (number && /[\d.]/.test(ch)) {
      const value = Number(number[0]);
      if (!Number.isFinite(value)) throw new ShapingSyntaxError(i, `number '${number[0]}' is out of range`);
      tokens.push({ kind: 'number', value, pos: i, text: number[0] });
      i += number[0].length;
      continue;
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i));
    if (ident) {
      tokens.push({ kind: 'ident', name: ident[0], pos: i });
      i += ident[0].length;
      continue;
    }
    if (src.startsWith('**', i)) {
      tokens.push({ kind: 'op', op: '^', pos: i });
      i += 2;
      continue;
    }
    const op = ({ '×': '*', '·': '*', '÷': '/', '−': '-' } as Record<string, string>)[ch] ?? ch;
    if ('+-*/^(),'.includes(op)) {
      tokens.push({ kind: 'op', op, pos: i });
      i++;
      continue;
    }
    throw new ShapingSyntaxError(i, `unexpected character '${ch}'`);
  }
  tokens.push({ kind: 'end', pos: src.length });
  return tokens;
}

function describe(token: Token): string {
  switch (token.kind) {
    case 'end':
      return 'end of expression';
    case 'number':
      return `'${token.text}'`;
    case 'ident':
      return `'${token.name}'`;
    case 'op':
      return `'${token.op}'`;
  }
}

class Parser {
  private index = 0;
  private depth = 0;

  constructor(
    private readonly tokens: Token[],
    private readonly params: ReadonlySet<string>,
  ) {}

  parse(): ShapingAst {
    const ast = this.sum();
    const next = this.peek();
    if (next.kind !== 'end') {
      throw new ShapingSyntaxError(next.pos, `unexpected ${describe(next)}; expected an operator or the end`);
    }
    return ast;
  }

  private peek(): Token {
    return this.tokens[this.index];
  }

  private isOp(op: string): boolean {
    const t = this.peek();
    return t.kind === 'op' && t.op === op;
  }

  private expectOp(op: string, context: string): void {
    const t = this.peek();
    if (t.kind !== 'op' || t.op !== op) {
      throw new ShapingSyntaxError(t.pos, `expected '${op}' ${context}, found ${describe(t)}`);
    }
    this.index++;
  }

  private enter(pos: number): void {
    if (++this.depth > MAX_DEPTH)
      throw new ShapingSyntaxError(pos, `expression nested deeper than ${MAX_DEPTH}`);
  }

  private sum(): ShapingAst {
    let left = this.product();
    while (this.isOp('+') || this.isOp('-')) {
      const t = this.peek() as Extract<Token, { kind: 'op' }>;
      this.index++;
      const right = this.product();
      left = { type: 'binary', op: t.op as '+' | '-', left, right, pos: t.pos };
    }
    return left;
  }

  private product(): ShapingAst {
    let left = this.unary();
    while (this.isOp('*') || this.isOp('/')) {
      const t = this.peek() as Extract<Token, { kind: 'op' }>;
      this.index++;
      const right = this.unary();
      left = { type: 'binary', op: t.op as '*' | '/', left, right, pos: t.pos };
    }
    return left;
  }

  private unary(): ShapingAst {
    const t = this.peek();
    if (t.kind === 'op' && (t.op === '-' || t.op === '+')) {
      this.enter(t.pos);
      this.index++;
      const arg = this.unary();
      this.depth--;
      return t.op === '-' ? { type: 'neg', arg, pos: t.pos } : arg;
    }
    return this.power();
  }

  private power(): ShapingAst {
    const base = this.primary();
    if (this.isOp('^')) {
      const t = this.peek();
      this.enter(t.pos);
      this.index++;
      const exponent = this.unary();
      this.depth--;
      return { type: 'binary', op: '^', left: base, right: exponent, pos: t.pos };
    }
    return base;
  }

  private primary(): ShapingAst {
    const t = this.peek();
    if (t.kind === 'number') {
      this.index++;
      return { type: 'number', value: t.value, pos: t.pos };
    }
    if (t.kind === 'op' && t.op === '(') {
      this.enter(t.pos);
      this.index++;
      const inner = this.sum();
      this.expectOp(')', `to close the '(' at position ${t.pos}`);
      this.depth--;
      return inner;
    }
    if (t.kind === 'ident') {
      this.index++;
      if (Object.hasOwn(SHAPING_FUNCTIONS, t.name)) return this.call(t.name as ShapingFunctionName, t.pos);
      if (this.isOp('(')) {
        throw new ShapingSyntaxError(
          t.pos,
          `unknown function '${t.name}'; allowed: ${Object.keys(SHAPING_FUNCTIONS).join(', ')}`,
        );
      }
      if (t.name === 'p') return { type: 'p', pos: t.pos };
      if (this.params.has(t.name)) return { type: 'param', name: t.name, pos: t.pos };
      if (Object.hasOwn(SHAPING_CONSTANTS, t.name)) {
        return { type: 'number', value: SHAPING_CONSTANTS[t.name], pos: t.pos };
      }
      const known = ['p', ...this.params].join(', ');
      throw new ShapingSyntaxError(
        t.pos,
        `unknown identifier '${t.name}'; the expression may use ${known}, the constants pi and e, and numbers (declare other names under params)`,
      );
    }
    throw new ShapingSyntaxError(t.pos, `unexpected ${describe(t)}; expected a number, 'p', a param or '('`);
  }

  private call(fn: ShapingFunctionName, pos: number): ShapingAst {
    this.enter(pos);
    this.expectOp('(', `after '${fn}'`);
    const args: ShapingAst[] = [this.sum()];
    while (this.isOp(',')) {
      this.index++;
      args.push(this.sum());
    }
    this.expectOp(')', `to close the call of '${fn}'`);
    this.depth--;
    const arity = SHAPING_FUNCTIONS[fn];
    if (args.length !== arity) {
      throw new ShapingSyntaxError(
        pos,
        `'${fn}' takes ${arity} argument${arity === 1 ? '' : 's'}, got ${args.length}`,
      );
    }
    return { type: 'call', fn, args, pos };
  }
}

/** Why a param name cannot be used, or undefined when it can. */
export function invalidParamName(name: string): string | undefined {
  if (!PARAM_NAME.test(name)) return 'must start with a letter or _ and contain only letters, digits and _';
  if (name === 'p') return "'p' is the token probability and cannot be a param";
  if (Object.hasOwn(SHAPING_FUNCTIONS, name)) return `'${name}' is a function name`;
  if (Object.hasOwn(SHAPING_CONSTANTS, name)) return `'${name}' is a built-in constant`;
  return undefined;
}

/**
 * Parses a shaping expression. Identifiers other than `p`, the given param names, `pi` and `e`
 * are rejected; errors name the 0-based character position.
 */
export function parseShapingExpression(src: string, paramNames: readonly string[] = []): ParseShapingResult {
  if (src.length > MAX_SOURCE_LENGTH) {
    return { ok: false, position: MAX_SOURCE_LENGTH, message: `longer than ${MAX_SOURCE_LENGTH} characters` };
  }
  for (const name of paramNames) {
    const problem = invalidParamName(name);
    if (problem) return { ok: false, position: 0, message: `param '${name}': ${problem}` };
  }
  try {
    const tokens = tokenize(src);
    if (tokens.length === 1) return { ok: false, position: 0, message: 'the expression is empty' };
    return { ok: true, ast: new Parser(tokens, new Set(paramNames)).parse() };
  } catch (error) {
    if (error instanceof ShapingSyntaxError)
      return { ok: false, position: error.position, message: error.message };
    throw error;
  }
}

// ---- evaluation -------------------------------------------------------------------------------

/** Value and derivative with respect to p (forward-mode dual number). */
export interface Dual {
  value: number;
  dp: number;
}

function missingParam(name: string): never {
  throw new Error(`shaping param '${name}' has no value`);
}

/** f and df/dp at one p. min/max/clip pass the derivative of the branch they select (ties: the first). */
export function evaluateShaping(ast: ShapingAst, p: number, params: Readonly<Record<string, number>>): Dual {
  switch (ast.type) {
    case 'number':
      return { value: ast.value, dp: 0 };
    case 'p':
      return { value: p, dp: 1 };
    case 'param': {
      const value = params[ast.name];
      if (value === undefined) missingParam(ast.name);
      return { value, dp: 0 };
    }
    case 'neg': {
      const a = evaluateShaping(ast.arg, p, params);
      return { value: -a.value, dp: -a.dp };
    }
    case 'binary': {
      const a = evaluateShaping(ast.left, p, params);
      const b = evaluateShaping(ast.right, p, params);
      switch (ast.op) {
        case '+':
          return { value: a.value + b.value, dp: a.dp + b.dp };
        case '-':
          return { value: a.value - b.value, dp: a.dp - b.dp };
        case '*':
          return { value: a.value * b.value, dp: a.dp * b.value + a.value * b.dp };
        case '/':
          return {
            value: a.value / b.value,
            dp: (a.dp * b.value - a.value * b.dp) / (b.value * b.value),
          };
        case '^': {
          const value = a.value ** b.value;
          // d(a^b) = b·a^(b−1)·da + a^b·ln(a)·db; the second term only when the exponent depends on p,
          // so constant exponents of negative bases stay finite.
          let dp = a.dp === 0 ? 0 : b.value * a.value ** (b.value - 1) * a.dp;
          if (b.dp !== 0) dp += value * Math.log(a.value) * b.dp;
          return { value, dp };
        }
      }
      break;
    }
    case 'call': {
      const args = ast.args.map((arg) => evaluateShaping(arg, p, params));
      const [x, y, z] = args;
      switch (ast.fn) {
        case 'exp': {
          const value = Math.exp(x.value);
          return { value, dp: value * x.dp };
        }
        case 'log':
          return { value: Math.log(x.value), dp: x.dp / x.value };
        case 'sqrt': {
          const value = Math.sqrt(x.value);
          return { value, dp: x.dp / (2 * value) };
        }
        case 'min':
          return y.value < x.value ? y : x;
        case 'max':
          return y.value > x.value ? y : x;
        case 'clip': {
          // clip(x, lo, hi) = min(max(x, lo), hi)
          const lower = y.value > x.value ? y : x;
          return z.value < lower.value ? z : lower;
        }
      }
    }
  }
  throw new Error(`unreachable shaping node ${(ast as { type: string }).type}`);
}

/**
 * The shaped term and its derivative with respect to logp (what the loss differentiates):
 * Ψ(p) = ∂f/∂logp = p·f'(p). For `p / (p + gamma)` this is gamma·p/(p+gamma)².
 */
export function shapingWithLogpGradient(
  ast: ShapingAst,
  p: number,
  params: Readonly<Record<string, number>>,
): { f: number; dfDLogp: number } {
  const { value, dp } = evaluateShaping(ast, p, params);
  return { f: value, dfDLogp: p * dp };
}

/** Renders an AST back to a fully parenthesised expression (stable, for logs and cache keys). */
export function formatShaping(ast: ShapingAst): string {
  switch (ast.type) {
    case 'number':
      return String(ast.value);
    case 'p':
      return 'p';
    case 'param':
      return ast.name;
    case 'neg':
      return `(-${formatShaping(ast.arg)})`;
    case 'binary':
      return `(${formatShaping(ast.left)} ${ast.op} ${formatShaping(ast.right)})`;
    case 'call':
      return `${ast.fn}(${ast.args.map(formatShaping).join(', ')})`;
  }
}

// ---- validation of a whole shaping config (used at job submission) ------------------------------

export interface ShapingProblem {
  /** Field path inside the shaping config: `expression` or `params.<name>`. */
  field: string;
  /** Character position in the expression, when the problem is a syntax error. */
  position?: number;
  message: string;
}

/** Probability values the expression is probed at: f must be finite over (0, 1]. */
export const SHAPING_PROBE_POINTS: readonly number[] = Object.freeze([
  1e-8, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99, 1,
]);

/**
 * Checks an expression with its params: syntax, param names and values, and that f(p) and its
 * derivative are finite for p in (0, 1] (probed at SHAPING_PROBE_POINTS), so a job never starts
 * with a shaping function that produces NaN in the loss.
 */
export function checkShaping(
  expression: string,
  params: Readonly<Record<string, number>>,
): { ok: true; ast: ShapingAst } | { ok: false; problem: ShapingProblem } {
  for (const [name, value] of Object.entries(params)) {
    const problem = invalidParamName(name);
    if (problem) return { ok: false, problem: { field: `params.${name}`, message: problem } };
    if (!Number.isFinite(value)) {
      return {
        ok: false,
        problem: { field: `params.${name}`, message: `must be a finite number, got ${value}` },
      };
    }
  }
  const parsed = parseShapingExpression(expression, Object.keys(params));
  if (!parsed.ok) {
    return {
      ok: false,
      problem: {
        field: 'expression',
        position: parsed.position,
        message: `at position ${parsed.position}: ${parsed.message}`,
      },
    };
  }
  for (const p of SHAPING_PROBE_POINTS) {
    const { value, dp } = evaluateShaping(parsed.ast, p, params);
    if (!Number.isFinite(value) || !Number.isFinite(dp)) {
      return {
        ok: false,
        problem: {
          field: 'expression',
          message: `is not finite at p = ${p} (f = ${value}, df/dp = ${dp}); the function must be defined for every p in (0, 1]`,
        },
      };
    }
  }
  return { ok: true, ast: parsed.ast };
}
