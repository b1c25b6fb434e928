import http from 'node:http';

export interface SendOptions {
  method?: string;
  headers?: Record<string, string | string[] | number>;
  /** Sent as one write, or as several writes when an array (to split bytes across chunks). */
  body?: string | Buffer | Buffer[];
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: { success: boolean; duplicate?: boolean; error?: { code: string; message: string } };
}

/** A plain HTTP request on 127.0.0.1, so tests control every header and byte. */
export function send(url: string, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'POST', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Reply['json'];
        try {
          json = JSON.parse(text);
        } catch {
          json = { success: false };
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    const parts = options.body === undefined ? [] : Array.isArray(options.body) ? options.body : [options.body];
    for (const part of parts) req.write(part);
    req.end();
  });
}
