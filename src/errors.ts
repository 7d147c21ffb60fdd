// Errors that are the user's to fix (bad input, bad flags, unsupported graphs). The CLI
// prints their message as one line on stderr and exits non-zero; anything else is a bug
// and gets a stack trace.
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}
