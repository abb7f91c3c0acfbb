// clipgate console: the player of an HLS stream (a devicekit.Stream's playlist).
//
// hls.js where the browser has Media Source Extensions, else the browser's own HLS
// (Safari, iOS). The playlist comes from the console (/hls/playlist), which reads it from
// OSS at every request; hls.js reloads a live one every target duration. #stream-state
// says what the player last loaded, and its data attributes are there for the tests:
// data-live ("true" while the playlist has no #EXT-X-ENDLIST), data-first (the media
// sequence number of its first segment), data-segments (how many it lists).
"use strict";

const stream = document.getElementById("stream");
if (stream) {
  const state = document.getElementById("stream-state");
  const fail = (msg) => {
    const p = document.getElementById("stream-error");
    p.textContent = msg;
    p.hidden = false;
    state.hidden = true;
  };
  const src = stream.dataset.src;
  if (window.Hls && window.Hls.isSupported()) {
    // No worker: the Content-Security-Policy allows no blob: workers.
    const hls = new window.Hls({enableWorker: false});
    hls.on(window.Hls.Events.LEVEL_LOADED, (_, data) => {
      const d = data.details;
      state.dataset.live = String(d.live);
      state.dataset.first = String(d.startSN);
      state.dataset.segments = String(d.fragments.length);
      state.textContent = d.live ?
        `Live: segments ${d.startSN} to ${d.endSN}, reloaded every ${d.targetduration} s.` :
        `Finished stream: ${d.fragments.length} segments, ${d.totalduration.toFixed(1)} s.`;
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (data.fatal) {
        fail(`The stream cannot be played (${data.type}: ${data.details}).`);
        hls.destroy();
      }
    });
    hls.loadSource(src);
    hls.attachMedia(stream);
  } else if (stream.canPlayType("application/vnd.apple.mpegurl")) {
    stream.src = src;
    state.textContent = "Playing with the browser's own HLS.";
    stream.addEventListener("error", () => fail("The stream cannot be played."));
  } else {
    fail("This browser plays no HLS streams (no Media Source Extensions, no native HLS).");
  }
}
