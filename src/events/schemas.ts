// zod/mini, not classic zod: its functions are separate exports a bundler can
// drop when unused, where classic zod's methods come as one piece, so a Worker
// importing mitpo-webhooks/web would carry all of classic zod (issue #21).
import { en } from 'zod/locales';
import * as z from 'zod/mini';

// zod/mini registers no error messages: without a locale every issue reads
// "Invalid input", and the invalid_payload refusal would stop saying what was
// wrong. Classic zod registers English when its first schema is built, unless
// the app has chosen a locale; this does the same, so an app's choice still wins.
if (z.config().localeError === undefined) z.config(en());

/**
 * MITPO may add fields to any object at any time, and a receiver must keep
 * working (and keep those fields) when it does. At the type level only the
 * documented fields are visible, so a typo like `event.data.provider_id` is a
 * compile error rather than an `unknown`.
 */
function openObject<S extends z.core.$ZodShape>(shape: S): z.ZodMiniObject<S> {
  return z.looseObject(shape) as unknown as z.ZodMiniObject<S>;
}

/**
 * A field MITPO may leave out or send as `null`: both mean absent, and the
 * parsed event has it `undefined`, so its type stays `T | undefined`, on a key
 * that is optional as it is (left out, the parsed event has no such key). The
 * schemas are built from one example payload, so an authentic event must never
 * be refused for a field MITPO left empty.
 */
function optionalField<T extends z.ZodMiniType>(schema: T) {
  const nullish = z.nullish(schema);
  return z.optional(z.pipe(nullish, z.transform((value: z.output<typeof nullish>) => value ?? undefined)));
}

/** The signed body `timestamp`: ISO 8601 with `Z` or an offset. */
export const eventTimestampSchema = z.iso.datetime({ offset: true });

/** `data` of the three `dispatch.*` events. */
export const dispatchDataSchema = openObject({
  dispatch_id: z.string(),
  channel: z.string(),
  status: z.string(),
  provider_resource_id: optionalField(z.string()),
});

/** `data` of the `connection.*` events: the reference documents no fields yet, so all are optional. */
export const connectionDataSchema = z.looseObject({});

function eventSchema<const N extends string, D extends z.ZodMiniType>(name: N, data: D) {
  return openObject({ event: z.literal(name), timestamp: eventTimestampSchema, data });
}

/** One schema per known event type, keyed by its name. */
export const mitpoEventSchemas = {
  'dispatch.accepted': eventSchema('dispatch.accepted', dispatchDataSchema),
  'dispatch.completed': eventSchema('dispatch.completed', dispatchDataSchema),
  'dispatch.failed': eventSchema('dispatch.failed', dispatchDataSchema),
  'connection.active': eventSchema('connection.active', connectionDataSchema),
  'connection.reauth_required': eventSchema('connection.reauth_required', connectionDataSchema),
};

/** Any known MITPO event, discriminated on `event`. */
export const mitpoEventSchema = z.discriminatedUnion('event', [
  mitpoEventSchemas['dispatch.accepted'],
  mitpoEventSchemas['dispatch.completed'],
  mitpoEventSchemas['dispatch.failed'],
  mitpoEventSchemas['connection.active'],
  mitpoEventSchemas['connection.reauth_required'],
]);

/** The envelope every event shares; what an event of a type this version does not know must still satisfy. */
export const unknownMitpoEventSchema = z.looseObject({
  event: z.string().check(z.minLength(1)),
  timestamp: eventTimestampSchema,
  data: z.looseObject({}),
});

/** A known MITPO event; `switch (event.event)` narrows it. */
export type MitpoEvent = z.infer<typeof mitpoEventSchema>;
/** The five event types MITPO documents. */
export type MitpoEventName = MitpoEvent['event'];
/** The event type with this name (or names). */
export type MitpoEventOf<N extends MitpoEventName> = Extract<MitpoEvent, { event: N }>;
/** A correctly signed event of a type this version does not know yet; only `onAny` receives it. */
export type UnknownMitpoEvent = z.infer<typeof unknownMitpoEventSchema>;

/** The known event names, in the order the reference lists them (frozen: the library's own messages read it). */
export const MITPO_EVENT_NAMES: readonly MitpoEventName[] = Object.freeze(Object.keys(mitpoEventSchemas) as MitpoEventName[]);

export function isMitpoEventName(name: unknown): name is MitpoEventName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(mitpoEventSchemas, name);
}
