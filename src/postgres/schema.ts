/** A schema name as it goes into SQL unquoted-safe: lower-case letters, digits and `_`; Postgres keeps `pg_` names for itself. */
export const SCHEMA_NAME = /^(?!pg_)[a-z_][a-z0-9_]{0,47}$/;

/** The channel new deliveries are announced on, one per schema. */
export function channelOf(schema: string): string {
  return `${schema}_deliveries`;
}

/**
 * The tables, each statement idempotent, run in one transaction under an
 * advisory lock so two processes migrating at once do not collide.
 *
 * - `deliveries`: one row per delivery key: the inbox. `state` is `waiting`,
 *   `done` or `dead`; a row taken counts the start (`started`) and is reserved
 *   (`lease_until`, 30 s), then locked by its worker's transaction for the run:
 *   a worker that dies leaves it to another once the reservation lapses.
 * - `resources`: `ordering`'s applied position per resource.
 */
export function migrationSql(schema: string): string[] {
  const s = `"${schema}"`;
  return [
    // Not `create schema if not exists`: Postgres checks the right to create schemas in the
    // database before it looks for the schema, so a role that owns the schema a DBA made for
    // it could not migrate. (The name is SCHEMA_NAME's, safe in a literal.)
    `do $$ begin
      if not exists (select 1 from pg_namespace where nspname = '${schema}') then create schema ${s}; end if;
    end $$`,
    `create table if not exists ${s}.deliveries (
      delivery_key text primary key,
      body bytea not null,
      headers jsonb not null,
      received_at bigint not null,
      queued_at timestamptz not null default now(),
      state text not null default 'waiting' check (state in ('waiting', 'done', 'dead')),
      run_after timestamptz not null default now(),
      started integer not null default 0,
      deferrals integer not null default 0,
      lease_until timestamptz,
      attempts integer not null,
      backoff_ms integer not null,
      retention_ms bigint not null,
      body_digest text,
      refused jsonb,
      traceparent text,
      retried_by_operator boolean not null default false,
      errors jsonb not null default '[]',
      finished_at timestamptz,
      keep_until timestamptz
    )`,
    `create index if not exists deliveries_due on ${s}.deliveries (run_after) where state = 'waiting'`,
    `create index if not exists deliveries_kept on ${s}.deliveries (keep_until) where state <> 'waiting'`,
    `create table if not exists ${s}.resources (
      resource text primary key,
      position bigint not null,
      keep_until timestamptz not null
    )`,
    // Every insert wakes the idle workers; polling is only the fallback.
    `create or replace function ${s}.announce_delivery() returns trigger language plpgsql as $$
     begin
       perform pg_notify('${channelOf(schema)}', '');
       return null;
     end
     $$`,
    `drop trigger if exists deliveries_announce on ${s}.deliveries`,
    `create trigger deliveries_announce after insert on ${s}.deliveries for each statement execute function ${s}.announce_delivery()`,
  ];
}

/**
 * Whether every object `migrationSql` makes is there already. `migrate()` then
 * runs none of it: `drop trigger` and `create index` lock the table against
 * inserts even with nothing to change, and on a live queue they wait for its
 * longest run, while every delivery arriving meanwhile waits behind them (503
 * after `enqueueTimeout`). A release that changes what `migrationSql` makes
 * changes this check with it.
 */
export function migratedSql(schema: string): string {
  const s = `"${schema}"`;
  return `select to_regclass('${s}.deliveries') is not null
            and to_regclass('${s}.resources') is not null
            and to_regclass('${s}.deliveries_due') is not null
            and to_regclass('${s}.deliveries_kept') is not null
            and to_regprocedure('${s}.announce_delivery()') is not null
            and exists (select 1 from pg_trigger where tgname = 'deliveries_announce' and tgrelid = to_regclass('${s}.deliveries')) as migrated`;
}
