// Errors that are the user's to fix (bad input, bad flags, unsupported graphs). The CLI
// prints their message as one line on stderr and exits non-zero; anything else is a bug
// and gets a stack trace. Exit codes are listed in docs/errors.md.
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * `s` with every character that could move the cursor, start an escape sequence, break the
 * line or reorder text on a terminal written as an escape (\x1b, \n, \u{202e}, ...). Names in
 * messages come from models and files a user did not write.
 */
export function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
