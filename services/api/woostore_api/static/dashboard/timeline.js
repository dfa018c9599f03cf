// A store's steps as they run: when each started and finished (from its progress events, and
// from its past events, read once, for a store the page met part-way), how long each took,
// and about how long the rest should take, from recent stores' measured step times
// (GET /stores/step-times). A one-second tick moves the shown times on; it asks nothing.

import { api } from './api.js';
import { EVENT, onStoreChange, onStoreEvent, stores } from './stores.js';
import { stepText } from './format.js';

const TICK_MS = 1000;
// Step times move slowly: read them again at most this often (until there are some).
const ESTIMATES_MAX_AGE_MS = 60_000;
// Events after which a store's next steps are a new run of a recipe.
const NEW_RUN = new Set([EVENT.requested, EVENT.changeRequested, EVENT.deleteRequested, EVENT.fellBack]);
const FINISHED = new Set([EVENT.ready, EVENT.failed, EVENT.changed, EVENT.changeFailed, EVENT.deleted, EVENT.cleanedUp]);

const timelines = new Map(); // id -> { phase, total, steps: [] by index, endedAt, outcome }
const backfilled = new Set(); // ids whose past events were read
const listeners = [];
let typical = new Map(); // phase -> { steps: Map(position -> median seconds) }, of steps measured
let estimatesReadAt = 0;
let ticker = null;

// listener(id) when a store's timeline, or only the time, moved on.
export function onTimelineChange(listener) {
  listeners.push(listener);
}

export function initTimeline() {
  onStoreEvent((id, event) => {
    if (stores.has(id)) record(id, event); // of the stores shown only: 10,000 make a lot
    if (event.type === EVENT.ready || event.type === EVENT.changed) readEstimates();
  });
  onStoreChange((id) => {
    if (id === null) forgetUnlisted(); // the list was read again
  });
}

// Timelines of stores no longer shown are forgotten.
function forgetUnlisted() {
  for (const id of timelines.keys()) {
    if (!stores.has(id)) {
      timelines.delete(id);
      backfilled.delete(id);
    }
  }
}

export function resetTimeline() {
  timelines.clear();
  backfilled.clear();
  typical = new Map();
  estimatesReadAt = 0;
  clearInterval(ticker);
  ticker = null;
}

export async function readEstimates() {
  if (typical.size && Date.now() - estimatesReadAt < ESTIMATES_MAX_AGE_MS) return;
  estimatesReadAt = Date.now();
  try {
    const { phases = [] } = (await api('GET', '/stores/step-times')) ?? {};
    typical = new Map(phases.map((phase) => [phase.phase, {
      steps: new Map(phase.steps.map((step) => [step.position, step.median_seconds])),
    }]));
  } catch {
    // A timeline without an estimate still shows; the next store ready asks again.
  }
}

function changed(id) {
  for (const listener of listeners) listener(id);
}

function record(id, event, { quiet = false } = {}) {
  if (NEW_RUN.has(event.type)) {
    timelines.delete(id);
  } else if (FINISHED.has(event.type)) {
    const timeline = timelines.get(id);
    if (timeline && !timeline.endedAt) {
      timeline.endedAt = event.time;
      timeline.outcome = event.type === EVENT.failed || event.type === EVENT.changeFailed ? 'failed' : 'done';
    }
  } else if (event.type === EVENT.progress && event.data?.step && event.data.phase !== 'clean_up') {
    // A failed store's clean-up is not shown here (its card shows it): the failed run stays.
    const { phase, step, state } = event.data;
    let timeline = timelines.get(id);
    const rerun = timeline && state === 'started' && timeline.steps[step.index]?.completedAt;
    if (!timeline || timeline.phase !== phase || rerun || timeline.endedAt) {
      timeline = { phase, total: step.total, steps: [], endedAt: null, outcome: null };
      timelines.set(id, timeline);
    }
    const known = timeline.steps[step.index] ?? { ...step, startedAt: null, completedAt: null };
    if (state === 'started') known.startedAt ??= event.time;
    else if (state === 'completed') known.completedAt = event.time;
    timeline.steps[step.index] = known;
  } else {
    return;
  }
  if (!quiet) {
    tick();
    changed(id);
  }
}

// Reads the store's past events once, for a store whose first steps ran before the page met
// it; live events recorded meanwhile are kept.
export async function backfill(id) {
  if (backfilled.has(id) || timelines.get(id)?.steps[1]?.startedAt) return;
  backfilled.add(id);
  try {
    const { events = [] } = (await api('GET', `/stores/${encodeURIComponent(id)}`)) ?? {};
    const live = timelines.get(id);
    timelines.delete(id);
    events.forEach((event) => record(id, event, { quiet: true }));
    const past = timelines.get(id);
    if (live && (!past || past.phase !== live.phase)) {
      timelines.set(id, live); // a newer run than the events read
    } else if (live && past) {
      live.steps.forEach((step, index) => {
        if (step) past.steps[index] = { ...past.steps[index], ...withoutNulls(step) };
      });
      past.endedAt ??= live.endedAt;
      past.outcome ??= live.outcome;
    }
    tick();
    changed(id);
  } catch {
    backfilled.delete(id); // next render tries again
  }
}

function withoutNulls(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value != null));
}

// Whether the store is running a recipe now: what its status says, whatever events the page
// missed (a refetch, say, brings a store that finished meanwhile).
function working(store) {
  return ['provisioning', 'updating', 'backing_up', 'restoring', 'deleting'].includes(store?.status);
}

// The tick runs while some shown store's timeline is under way.
function tick() {
  if (ticker !== null || !runningIds().length) return;
  ticker = setInterval(() => {
    const running = runningIds();
    if (!running.length) {
      clearInterval(ticker);
      ticker = null;
    }
    running.forEach(changed);
  }, TICK_MS);
}

function runningIds() {
  return [...timelines].filter(([id, t]) => !t.endedAt && working(stores.get(id))).map(([id]) => id);
}

/* ---------- What a card shows ---------- */

// The card's timeline (`list`, `summary`, `details`) and its time line (`eta`) for `store`.
export function renderTimeline(els, store) {
  const timeline = timelines.get(store.id);
  if (timeline && !timeline.endedAt && !working(store)) {
    // It finished while the page was not told (events it missed): it ended by its last change.
    timeline.endedAt = store.updated_at;
    timeline.outcome = store.status === 'failed' ? 'failed' : 'done';
  }
  if (timeline && !timeline.endedAt) tick();
  // A store past the queue has steps to show: read when the panel is opened, if not known.
  els.details.hidden = !timeline && (store.status === 'queued' || store.status === 'deleted');
  els.eta.hidden = !timeline || Boolean(timeline.endedAt);
  if (!timeline) {
    els.summary.textContent = 'Steps';
    els.list.replaceChildren();
    return;
  }
  const now = Date.now();
  const steps = timeline.steps.filter(Boolean);
  const done = steps.filter((step) => step.completedAt).length;
  const started = Date.parse(timeline.steps[1]?.startedAt ?? steps[0]?.startedAt);
  const ended = Date.parse(timeline.endedAt);
  const took = Number.isFinite(ended) && Number.isFinite(started) ? (ended - started) / 1000 : null;
  els.summary.textContent = timeline.endedAt
    ? `Steps · ${done} of ${timeline.total}${took === null ? '' : ` in ${duration(took)}`}`
    : `Steps · ${done} of ${timeline.total}`;

  const items = steps.map((step) => stepItem(step, timeline, now));
  const left = timeline.total - Math.max(0, ...steps.map((step) => step.index));
  if (left > 0 && !timeline.endedAt) items.push(pendingItem(left, timeline));
  els.list.replaceChildren(...items);

  if (!timeline.endedAt) els.eta.textContent = etaText(store, timeline, now);
}

function stepItem(step, timeline, now) {
  const item = document.createElement('li');
  item.dataset.testid = 'timeline-step';
  const failed = timeline.outcome === 'failed' && !step.completedAt;
  item.dataset.state = step.completedAt ? 'done' : failed ? 'failed' : timeline.endedAt ? 'stopped' : 'running';
  const name = document.createElement('span');
  name.textContent = stepText(step);
  const time = document.createElement('span');
  time.className = 'duration';
  const from = Date.parse(step.startedAt);
  const to = step.completedAt ? Date.parse(step.completedAt) : timeline.endedAt ? Date.parse(timeline.endedAt) : now;
  const seconds = Number.isFinite(from) && Number.isFinite(to) ? Math.max(0, (to - from) / 1000) : null;
  const label = { done: '', running: 'running ', failed: 'failed after ', stopped: 'stopped after ' }[item.dataset.state];
  time.textContent = seconds === null ? '' : `${label}${duration(seconds)}`;
  item.append(name, time);
  return item;
}

function pendingItem(left, timeline) {
  const item = document.createElement('li');
  item.dataset.state = 'pending';
  const usually = remainingTypical(timeline, Math.max(0, ...timeline.steps.map((s, i) => (s ? i : 0))));
  item.textContent = `${left} more ${left === 1 ? 'step' : 'steps'}${usually ? `, usually ${duration(usually)}` : ''}`;
  return item;
}

// The typical seconds of the timeline's steps after position `after`; null unless each of
// them has been measured. A new platform knows only the steps its first stores finished:
// summed alone, they made a store with most of its steps to go look nearly done.
function remainingTypical(timeline, after) {
  const known = typical.get(timeline.phase);
  if (!known) return null;
  let sum = 0;
  for (let position = after + 1; position <= timeline.total; position += 1) {
    const seconds = known.steps.get(position);
    if (seconds === undefined) return null;
    sum += seconds;
  }
  return sum;
}

function etaText(store, timeline, now) {
  // The owner's wait began when they last asked (queue included; a retry starts it again);
  // a change's, at its first step.
  const askedAt = ['provision', 'clone', 'personalise'].includes(timeline.phase)
    ? Date.parse(store.requested_at ?? store.created_at) : Date.parse(timeline.steps[1]?.startedAt);
  // Clamped: a browser clock behind the server's would make it negative.
  const elapsed = Number.isFinite(askedAt) ? `${duration(Math.max(0, now - askedAt) / 1000)} elapsed` : '';
  const current = timeline.steps.reduce((last, step) => (step ? step : last), null);
  const known = typical.get(timeline.phase);
  if (!known || !current) return elapsed;
  const typicalOfCurrent = current.completedAt ? 0 : known.steps.get(current.index);
  const rest = remainingTypical(timeline, current.index);
  if (typicalOfCurrent === undefined || rest === null) return elapsed; // not all measured yet
  // A step completed needs no time more (its start may not be known: a page met it after).
  const inStep = (now - Date.parse(current.startedAt)) / 1000;
  // Past half as long again as usual (and 2 s), a step is said to run long: the time left
  // after it stood still, and read as a page that had stopped (a user's review).
  if (!current.completedAt && inStep > typicalOfCurrent * 1.5 + 2) {
    const after = rest >= 1 ? `, then about ${duration(rest)}` : '';
    return [elapsed, `this step takes longer than usual${after}`].filter(Boolean).join(' · ');
  }
  const left = (current.completedAt ? 0 : Math.max(0, typicalOfCurrent - inStep)) + rest;
  const estimate = left >= 1 ? `about ${duration(left)} left` : 'finishing';
  return [elapsed, estimate].filter(Boolean).join(' · ');
}

// 0.4 s, 12 s, 1 min 05 s
function duration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, '0')} s`;
}
