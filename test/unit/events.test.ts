import * as z from 'zod/mini';
import { parseEvent, MITPO_EVENT_NAMES, WebhookVerificationError } from '../../src';
import { parseAnyEvent } from '../../src/events/parse-event';
import { SAMPLE_DATA } from '../../src/testing';

const TS = '2026-03-22T10:30:00Z';

describe('MITPO_EVENT_NAMES', () => {
  it("cannot be changed by the app, so the library's refusals keep naming the five types", () => {
    const names = MITPO_EVENT_NAMES as string[];
    expect(() => names.push('dispatch.cancelled')).toThrow(TypeError);
    expect(() => names.reverse()).toThrow(TypeError);
    expect(() => parseEvent({ event: 'dispatch.cancelled', timestamp: TS, data: {} })).toThrow(
      'known event types are dispatch.accepted, dispatch.completed, dispatch.failed, connection.active, connection.reauth_required',
    );
  });
});

describe('parseEvent', () => {
  it("parses the reference's example payload", () => {
    const event = parseEvent({
      event: 'dispatch.completed',
      timestamp: TS,
      data: { dispatch_id: 'dsp_a1b2c3d4', channel: 'meta_ads', status: 'completed', provider_resource_id: '23851234567890' },
    });
    expect(event.event).toBe('dispatch.completed');
    if (event.event === 'dispatch.completed') expect(event.data.provider_resource_id).toBe('23851234567890');
  });

  it.each(MITPO_EVENT_NAMES)('accepts the sample data for %s', (name) => {
    expect(parseEvent({ event: name, timestamp: TS, data: SAMPLE_DATA[name] }).event).toBe(name);
  });

  it('keeps fields the reference does not document, at every level', () => {
    const event = parseEvent({
      event: 'dispatch.failed',
      timestamp: TS,
      id: 'evt_1',
      data: { dispatch_id: 'd', channel: 'c', status: 'failed', error: { code: 'x' } },
    });
    expect(event).toMatchObject({ id: 'evt_1', data: { error: { code: 'x' } } });
  });

  it('treats provider_resource_id as optional and the connection fields as open', () => {
    expect(() => parseEvent({ event: 'dispatch.accepted', timestamp: TS, data: { dispatch_id: 'd', channel: 'c', status: 's' } })).not.toThrow();
    expect(parseEvent({ event: 'connection.reauth_required', timestamp: TS, data: {} }).data).toEqual({});
  });

  it.each([
    ['a missing dispatch_id', { event: 'dispatch.completed', timestamp: TS, data: { channel: 'c', status: 's' } }, /data\.dispatch_id/],
    ['a numeric status', { event: 'dispatch.completed', timestamp: TS, data: { dispatch_id: 'd', channel: 'c', status: 1 } }, /data\.status/],
    ['data as an array', { event: 'connection.active', timestamp: TS, data: [] }, /data/],
    ['a timestamp that is not ISO 8601', { event: 'connection.active', timestamp: 'yesterday', data: {} }, /timestamp/],
    ['no event name', { timestamp: TS, data: {} }, /no event name/],
    ['an unknown event type', { event: 'dispatch.cancelled', timestamp: TS, data: {} }, /known event types are/],
    ['an array', [], /no event name/],
    ['null', null, /no event name/],
  ])('refuses %s with invalid_payload and says where', (_name, value, where) => {
    try {
      parseEvent(value);
      throw new Error('expected parseEvent to throw');
    } catch (error) {
      expect(error).toBeInstanceOf(WebhookVerificationError);
      expect(error).toMatchObject({ code: 'invalid_payload', status: 400 });
      expect((error as Error).message).toMatch(where);
    }
  });

  it("says what was wrong, in English, and keeps zod's issues as the cause", () => {
    // zod/mini brings no messages of its own: without the English locale the
    // schemas register, every message would read just "Invalid input".
    let error: unknown;
    try {
      parseEvent({ event: 'dispatch.completed', timestamp: TS, data: { dispatch_id: 'd', channel: 'c', status: 1 } });
    } catch (thrown) {
      error = thrown;
    }
    expect((error as Error).message).toBe(
      'Event payload does not match the "dispatch.completed" event schema: data.status: Invalid input: expected string, received number',
    );
    expect((error as Error).cause).toMatchObject({
      issues: [{ code: 'invalid_type', path: ['data', 'status'], message: 'Invalid input: expected string, received number' }],
    });
  });

  it('reads a null optional field as undefined, and takes a timestamp with an offset', () => {
    const event = parseEvent({
      event: 'dispatch.completed',
      timestamp: '2026-03-22T12:30:00+02:00',
      data: { dispatch_id: 'd', channel: 'c', status: 's', provider_resource_id: null },
    });
    expect(event.data).toEqual({ dispatch_id: 'd', channel: 'c', status: 's', provider_resource_id: undefined });
    expect(() => parseEvent({ event: 'connection.active', timestamp: '2026-03-22T10:30:00', data: {} })).toThrow(/timestamp/);
  });

  it("leaves an app's own zod locale in place", () => {
    // The English default is only a default, as in classic zod: a locale the app
    // chose before loading mitpo-webhooks keeps its messages.
    const config = z.config();
    const before = config.localeError;
    z.config({ localeError: () => 'custom message' });
    try {
      jest.isolateModules(() => {
        const isolated = jest.requireActual<typeof import('../../src/events/parse-event')>('../../src/events/parse-event');
        expect(() => isolated.parseEvent({ event: 'connection.active', timestamp: 1, data: {} })).toThrow(/timestamp: custom message/);
      });
    } finally {
      z.config({ localeError: before });
    }
  });

  it('does not let a __proto__ key reach any prototype', () => {
    const value = JSON.parse(
      `{"event":"connection.active","timestamp":"${TS}","data":{"__proto__":{"polluted":true}},"__proto__":{"polluted":true}}`,
    );
    const event = parseEvent(value);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(event)).toBe(Object.prototype);
    expect((event as unknown as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('parseAnyEvent', () => {
  it('returns an event of a type this version does not know, keeping its data', () => {
    const event = parseAnyEvent({ event: 'dispatch.cancelled', timestamp: TS, data: { dispatch_id: 'd', reason: 'r' } });
    expect(event).toEqual({ event: 'dispatch.cancelled', timestamp: TS, data: { dispatch_id: 'd', reason: 'r' } });
  });

  it('still holds an unknown type to the shared envelope', () => {
    expect(() => parseAnyEvent({ event: 'x.y', timestamp: TS })).toThrow(/data/);
    expect(() => parseAnyEvent({ event: '', timestamp: TS, data: {} })).toThrow(WebhookVerificationError);
  });

  it('still validates known types strictly', () => {
    expect(() => parseAnyEvent({ event: 'dispatch.completed', timestamp: TS, data: {} })).toThrow(/dispatch_id/);
  });
});
