import { z } from 'zod';

/** One problem with one field of a request: `{path: 'hyperparameters.group_size', message: 'must be >= 2, got 1'}`. */
export const FieldErrorSchema = z.object({
  path: z.string(),
  message: z.string(),
});
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** The only error shape any cgrpo boundary returns. Never a stack trace. */
export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    fields: z.array(FieldErrorSchema).default([]),
    request_id: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** Turns zod issues into field errors with dotted paths (`datasets.train.fields.prompt`). */
export function fieldErrorsFromZod(error: z.ZodError, prefix = ''): FieldError[] {
  return error.issues.flatMap((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined];
    return keys.map((key) => {
      const segments = [...(prefix ? [prefix] : []), ...issue.path.map(String), ...(key ? [key] : [])];
      const message =
        issue.code === 'unrecognized_keys' ? 'unknown field (check the spelling)' : issue.message;
      return { path: segments.join('.'), message };
    });
  });
}
