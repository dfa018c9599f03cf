// WooStore dashboard: plain ES modules, no build step, no dependencies, no polling.
//
// This entry point wires the modules in dashboard/ together and resumes the session:
//   api.js       the HTTP client and the session its requests belong to
//   alerts.js    the alerts at the top of the page
//   session.js   signing in and out
//   stream.js    the platform's description and the live event stream
//   stores.js    the stores' state: snapshots, events applied to them, their actions
//   cards.js     the store list and its cards (with their credentials panel)
//   counts.js    how many stores are in each status
//   activity.js  a card's Activity log
//   actions.js   what the user asks of stores: create, delete, upgrade, roll back
//   format.js    how steps, changes and times read

import { askToDelete, changeStore, initActions } from './dashboard/actions.js';
import { initCards } from './dashboard/cards.js';
import { initCounts } from './dashboard/counts.js';
import { initSession } from './dashboard/session.js';

initCards({ delete: askToDelete, change: changeStore });
initCounts();
initActions();
initSession();
