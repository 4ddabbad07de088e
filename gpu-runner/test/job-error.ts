// Test helper: what a job-setup promise fails with, as `code: message` when it is a JobError.
import { JobError } from '../src/job/types';

export async function jobFailure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return e instanceof JobError ? `${e.code}: ${e.message}` : `not a JobError: ${String(e)}`;
  }
}
