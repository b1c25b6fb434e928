/**
 * A call to MITPO's API that did not succeed. `code` is MITPO's own error code when
 * it sent one, else `http_<status>`, `redirect` (a 3xx, never followed),
 * `response_too_large` (an answer over 1 MiB), `network_error`, `timeout` or
 * `invalid_response`. Messages never contain the API key, and what they quote from
 * the server is stripped of control characters.
 */
export class MitpoApiError extends Error {
  override readonly name = 'MitpoApiError';
  /** MITPO's error code, or one of this client's listed above. */
  readonly code: string;
  /** The HTTP status, when MITPO answered at all. */
  readonly status: number | undefined;
  /** MITPO's `request_id`, for its support. */
  readonly requestId: string | undefined;

  constructor(code: string, message: string, details: { status?: number | undefined; requestId?: string | undefined; cause?: unknown } = {}) {
    super(message, { cause: details.cause });
    this.code = code;
    this.status = details.status;
    this.requestId = details.requestId;
  }
}
