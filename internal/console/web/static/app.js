// clipgate console: the little the pages need beyond HTML.
"use strict";

// Forms with data-confirm ask before they submit (delete, revoke, retention).
document.addEventListener("submit", (e) => {
  const msg = e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) {
    e.preventDefault();
  }
});

// The player: a clip the browser cannot play gets a message and its download instead of
// a blank player. The media element's error is the verdict (it may come before this
// script runs, hence player.error). canPlayType only warns: browsers play some types
// they do not list (QuickTime, MP4 stored as application/octet-stream).
const player = document.getElementById("player");
if (player) {
  const show = (id, on) => { document.getElementById(id).hidden = !on; };
  const failed = () => {
    if (player.hidden) {
      return;
    }
    player.hidden = true;
    player.removeAttribute("src");
    player.load(); // stop fetching
    show("may-not-play", false);
    show("cannot-play", true);
  };
  player.addEventListener("error", failed);
  if (player.error) {
    failed();
  } else if (player.readyState < HTMLMediaElement.HAVE_CURRENT_DATA && player.dataset.type &&
             player.canPlayType(player.dataset.type) === "") {
    show("may-not-play", true);
    player.addEventListener("loadeddata", () => show("may-not-play", false), {once: true});
  }
}
