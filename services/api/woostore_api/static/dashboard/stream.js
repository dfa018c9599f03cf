// The live side: the platform's description (the simulated banner, the events URL) and the
// event stream, opened with a one-time ticket and opened again with a fresh one whenever it
// is lost. Its events go to the store state; no polling.

import { api, SessionEnded } from './api.js';
import { handleError } from './alerts.js';
import { setShippedChart } from './cards.js';
import { loadStores, receiveEvent, storesLoaded } from './stores.js';

const RETRY_DELAYS_MS = [1000, 2000, 5000];
const CONNECTION_LABELS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' };

const els = {
  banner: document.getElementById('simulated-banner'),
  platformInfo: document.getElementById('platform-info'),
  connection: document.getElementById('connection-state'),
};

let platform = null;
let lastEventId = null;
let stream = null;
let retryAttempt = 0;
let retryTimer = null;

// Closes the stream and forgets the platform: the session is over.
export function disconnect() {
  closeStream();
  clearTimeout(retryTimer);
  platform = null;
  setShippedChart(null);
  lastEventId = null;
  retryAttempt = 0;
  retryTimer = null;
  renderPlatform();
  setConnection('connecting');
}

function renderPlatform() {
  els.banner.hidden = platform?.cluster !== 'simulated';
  els.platformInfo.textContent = platform
    ? [platform.cluster && `Cluster: ${platform.cluster}`, platform.base_domain, platform.version && `v${platform.version}`]
        .filter(Boolean)
        .join(' · ')
    : '';
}

function setConnection(status) {
  els.connection.dataset.state = status;
  els.connection.textContent = CONNECTION_LABELS[status];
}

// Startup and reconnects share this path: platform -> ticket -> EventSource.
export async function connect() {
  clearTimeout(retryTimer);
  setConnection(retryAttempt > 0 ? 'reconnecting' : 'connecting');
  try {
    if (!platform) {
      platform = await api('GET', '/platform');
      renderPlatform();
      setShippedChart(platform.store_chart_version ?? null);
    }
    const { ticket } = await api('POST', '/events/ticket');
    openStream(ticket);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    if (retryAttempt === 0) handleError(err); // one alert per outage, not one per retry
    scheduleReconnect();
  }
}

function openStream(ticket) {
  closeStream();
  const url = new URL(platform.events_url, location.href);
  url.searchParams.set('ticket', ticket);
  if (lastEventId !== null) url.searchParams.set('last_event_id', lastEventId);

  const opened = new EventSource(url);
  opened.resumed = lastEventId !== null;
  opened.onopen = () => onStreamOpen(opened);
  opened.onmessage = onStreamMessage;
  opened.addEventListener('refetch', (message) => onRefetch(opened, message));
  opened.onerror = () => onStreamError(opened);
  stream = opened;
}

function closeStream() {
  if (!stream) return;
  stream.onopen = stream.onmessage = stream.onerror = null;
  stream.close();
  stream = null;
}

function onStreamOpen(opened) {
  if (opened !== stream) return;
  retryAttempt = 0;
  setConnection('live');
  // A stream resumed from the last event seen brings what was missed (or says to read the
  // stores again: refetch). Otherwise they are read now, after the stream is open, so no
  // change can slip between snapshot and stream.
  if (!opened.resumed || !storesLoaded()) loadStores();
}

function onStreamError(failed) {
  if (failed !== stream) return;
  // A ticket opens one stream, once (and expires within a minute): the browser's own retry
  // would present the spent ticket again. Reconnect with a fresh one instead.
  closeStream();
  scheduleReconnect();
}

function scheduleReconnect() {
  const delay = RETRY_DELAYS_MS[Math.min(retryAttempt, RETRY_DELAYS_MS.length - 1)];
  retryAttempt += 1;
  setConnection('reconnecting');
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

// The stream could not resume where this page left off (what happened meanwhile aged out):
// the stores are read again, and the stream goes on from the id it gave.
function onRefetch(opened, message) {
  if (opened !== stream) return;
  if (message.lastEventId) lastEventId = message.lastEventId;
  loadStores();
}

function onStreamMessage(message) {
  if (message.lastEventId) lastEventId = message.lastEventId;
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    console.warn('Ignoring malformed event', message.data);
    return;
  }
  if (event && typeof event.subject === 'string') receiveEvent(event);
}
