// Vite's `?raw` imports (docs read by tests as text).
declare module '*.md?raw' {
  const text: string;
  export default text;
}
