// A replay store on a Cloudflare Durable Object, for mitpo-webhooks/web on
// Workers. A Worker's MemoryReplayStore lives in one isolate: another isolate
// (another location, or the same one after an eviction) does not see its keys.
// A Durable Object is one place for every isolate, and serves its requests one
// at a time, so a claim is atomic without a lock. Here each delivery key gets an
// object of its own (idFromName(key)): keys never contend, and each object
// deletes itself with an alarm when its key expires.
//
// wrangler.toml:
//   [[durable_objects.bindings]]
//   name = "REPLAY_KEYS"
//   class_name = "ReplayKeyObject"
//   [[migrations]]
//   tag = "v1"
//   new_sqlite_classes = ["ReplayKeyObject"]
//
// Tested in workerd: test/edge/durable-object-store.test.ts.
import { MitpoWebhooks, type ClaimResult, type ReplayStore } from 'mitpo-webhooks/web';

// The parts of the Workers runtime this file uses; in a Worker project they come
// from @cloudflare/workers-types (or `wrangler types`).
interface DurableObjectStorage {
  get<T>(key: string): Promise<T | undefined>;
  put<T>(key: string, value: T): Promise<void>;
  deleteAll(): Promise<void>;
  setAlarm(scheduledTime: number): Promise<void>;
}
interface DurableObjectState {
  storage: DurableObjectStorage;
}
interface DurableObjectStub {
  fetch(url: string, init: RequestInit): Promise<Response>;
}
export interface DurableObjectNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): DurableObjectStub;
}

type Operation =
  | { op: 'claim'; ttlMs: number; token?: string }
  | { op: 'complete'; ttlMs: number }
  | { op: 'release'; token?: string }
  | { op: 'renew'; ttlMs: number; token: string };

interface KeyState {
  done: boolean;
  expiresAt: number;
  token: string | undefined;
}

/** The Durable Object holding one delivery key. */
export class ReplayKeyObject {
  constructor(private readonly state: DurableObjectState) {}

  async fetch(request: Request): Promise<Response> {
    const operation = (await request.json()) as Operation;
    return Response.json(await this.apply(operation));
  }

  /** Deletes the key once it expired; an alarm set for an earlier state may find it renewed. */
  async alarm(): Promise<void> {
    const key = await this.state.storage.get<KeyState>('key');
    if (key === undefined || key.expiresAt <= Date.now()) await this.state.storage.deleteAll();
    else await this.state.storage.setAlarm(key.expiresAt);
  }

  // No await between reading the key and writing it back leaves room for another
  // request: the object's input gate holds other events while storage answers.
  private async apply(operation: Operation): Promise<ClaimResult | boolean | null> {
    const storage = this.state.storage;
    const now = Date.now();
    const stored = await storage.get<KeyState>('key');
    const held = stored !== undefined && stored.expiresAt > now ? stored : undefined;
    switch (operation.op) {
      case 'claim':
        if (held !== undefined) return held.done ? 'done' : 'in_flight';
        await this.keep({ done: false, expiresAt: now + operation.ttlMs, token: operation.token });
        return 'claimed';
      case 'complete':
        // Kept even when the claim lapsed meanwhile: the handlers did succeed.
        await this.keep({ done: true, expiresAt: now + operation.ttlMs, token: undefined });
        return null;
      case 'release':
        if (held !== undefined && !held.done && (operation.token === undefined || held.token === operation.token)) await storage.deleteAll();
        return null;
      case 'renew':
        if (held === undefined || held.done || held.token !== operation.token) return false;
        await this.keep({ ...held, expiresAt: now + operation.ttlMs });
        return true;
    }
  }

  private async keep(key: KeyState): Promise<void> {
    await this.state.storage.put('key', key);
    await this.state.storage.setAlarm(key.expiresAt);
  }
}

/** A `ReplayStore` for `mitpo-webhooks/web` whose keys live in `ReplayKeyObject`s: shared by every isolate of the Worker. */
export class DurableObjectReplayStore implements ReplayStore {
  constructor(private readonly namespace: DurableObjectNamespace) {}

  claim(key: string, inFlightTtlMs: number, token?: string): Promise<ClaimResult> {
    return this.send(key, { op: 'claim', ttlMs: inFlightTtlMs, token }) as Promise<ClaimResult>;
  }

  async complete(key: string, retentionMs: number): Promise<void> {
    await this.send(key, { op: 'complete', ttlMs: retentionMs });
  }

  async release(key: string, token?: string): Promise<void> {
    await this.send(key, { op: 'release', token });
  }

  renew(key: string, inFlightTtlMs: number, token: string): Promise<boolean> {
    return this.send(key, { op: 'renew', ttlMs: inFlightTtlMs, token }) as Promise<boolean>;
  }

  private async send(key: string, operation: Operation): Promise<unknown> {
    const stub = this.namespace.get(this.namespace.idFromName(key));
    const response = await stub.fetch('https://replay-key/', { method: 'POST', body: JSON.stringify(operation) });
    // A failure is thrown, so the delivery is answered 503 replay_store_unavailable and MITPO retries.
    if (!response.ok) throw new Error(`the replay key object answered ${response.status}`);
    return response.json();
  }
}

interface Env {
  MITPO_WEBHOOK_SECRET: string;
  REPLAY_KEYS: DurableObjectNamespace;
}

let webhooks: MitpoWebhooks | undefined;

/** The Worker: the receiver is made on the first request, when `env` (the secret, the binding) is known. */
export default {
  fetch(request: Request, env: Env): Promise<Response> {
    webhooks ??= new MitpoWebhooks({ secret: env.MITPO_WEBHOOK_SECRET, replay: new DurableObjectReplayStore(env.REPLAY_KEYS) }).on(
      'dispatch.completed',
      async (event) => {
        console.log(`dispatch ${event.data.dispatch_id} completed`);
      },
    );
    return webhooks.fetchHandler()(request);
  },
};
