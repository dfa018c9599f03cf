// WooStore dashboard: plain ES modules, no build step, no dependencies, no polling.
//
// This entry point wires the modules in dashboard/ together and resumes the session:
//   api.js       the HTTP client and who the session belongs to
//   alerts.js    errors, at the top of the page until dismissed
//   notices.js   a store became ready or failed, for a while
//   session.js   signing in and out
//   views.js     the views (stores, keys, tenants) and which one is shown
//   stream.js    the platform's description and the live event stream
//   stores.js    the stores' state: the pages read, events applied to them, their actions
//   listing.js   the list's search, status filter with counts, paging and states
//   cards.js     a card per store (with its credentials panel)
//   timeline.js  a card's steps, their durations and the time left
//   activity.js  a card's Activity log
//   actions.js   what the user asks of stores: create, delete, upgrade, roll back
//   keys.js      API keys: create, list, revoke
//   tenants.js   for admins: tenants' usage, the tenant picker
//   confirm.js   the confirmation dialog
//   copy.js      copying a secret
//   format.js    how steps, changes and times read

import { askToDelete, changeSettings, changeStore, initActions } from './dashboard/actions.js';
import { initCards } from './dashboard/cards.js';
import { forgetNewKey, initKeys, loadKeys } from './dashboard/keys.js';
import { initListing } from './dashboard/listing.js';
import { initNotices } from './dashboard/notices.js';
import { initSession } from './dashboard/session.js';
import { initTenants, loadTenants, onTenantPicked } from './dashboard/tenants.js';
import { initTimeline } from './dashboard/timeline.js';
import { initViews, isViewShown, onViewShown } from './dashboard/views.js';

initCards({ delete: askToDelete, change: changeStore, settings: changeSettings });
initListing();
initTimeline();
initNotices();
initActions();
initKeys();
initTenants();
initViews();
onViewShown('keys', () => {
  forgetNewKey();
  loadKeys();
});
onViewShown('tenants', loadTenants);
onTenantPicked(() => {
  if (isViewShown('keys')) loadKeys();
});
initSession();
