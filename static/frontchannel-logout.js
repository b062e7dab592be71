// The signed-out page after an RP-initiated logout (OpenID Connect Front-Channel Logout 1.0
// §2 with RP-Initiated Logout 1.0 §3): each relying party's logout page loads in a hidden
// iframe, and the person goes on to the post-logout redirect only once they have all loaded,
// so that no iframe is cut off by the navigation. A relying party that never answers holds
// the person up for at most WAIT_MS; the visible link works without this script.
//
// Loaded by a plain <script> placed before the iframes, so the listener below is in place
// before any of them can finish loading.
"use strict";
(function () {
  var WAIT_MS = 5000;
  var loaded = 0;
  var parsed = false;
  var left = false;

  function leave() {
    var link = document.getElementById("continue");
    if (left || !link) {
      return;
    }
    left = true;
    // replace: the back button should not come back to a page that has done its work.
    window.location.replace(link.href);
  }

  function leaveIfDone() {
    var frames = document.querySelectorAll("iframe.frontchannel-logout");
    if (parsed && loaded >= frames.length) {
      leave();
    }
  }

  // An iframe's load event does not bubble, but the document sees it while capturing.
  document.addEventListener(
    "load",
    function (event) {
      var target = event.target;
      if (target instanceof HTMLIFrameElement && target.classList.contains("frontchannel-logout")) {
        loaded += 1;
        leaveIfDone();
      }
    },
    true
  );
  document.addEventListener("DOMContentLoaded", function () {
    parsed = true;
    leaveIfDone();
  });
  window.setTimeout(leave, WAIT_MS);
})();
