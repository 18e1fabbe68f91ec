// Live updates without a reload: a page whose <main> is marked data-live (a task still
// running, a delivery still pending) fetches itself every two seconds and swaps its <main>
// in, until the fresh page is no longer live. Parsed markup never runs scripts.
(function () {
  "use strict";
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  async function refresh() {
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("main");
        if (fresh) {
          main.replaceChildren(...fresh.childNodes);
          if (!fresh.hasAttribute("data-live")) {
            main.removeAttribute("data-live");
            return;
          }
        }
      }
    } catch (error) {
      // offline for a moment: try again at the next turn
    }
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();
