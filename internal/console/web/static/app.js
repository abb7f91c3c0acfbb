// clipgate console: the little the pages need beyond HTML.
"use strict";

// Forms with data-confirm ask before they submit (delete, revoke, retention).
document.addEventListener("submit", (e) => {
  const msg = e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) {
    e.preventDefault();
  }
});
