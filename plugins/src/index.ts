// @cgrpo/plugins: the built-in plugins and the shaping expression language. The SDK for plugin
// authors is '@cgrpo/plugins/sdk' and the sandbox host '@cgrpo/plugins/sandbox'.
export * from '../builtin/index';
export {
  checkShaping,
  evaluateShaping,
  formatShaping,
  parseShapingExpression,
  type ShapingAst,
  shapingWithLogpGradient,
} from '../builtin/shaping/expression';
