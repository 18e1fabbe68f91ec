// Live updates without a reload: a page whose <main> is marked data-live (a task still
// running, a delivery still pending) fetches itself every two seconds and swaps its <main>
// in, until the fresh page is no longer live. Parsed markup never runs scripts. What the
// reader opened (a <details>: the metadata, an attempt's request and answer) stays open, and
// focus stays where it was: the n-th such element of the fresh page is the n-th of the old.
(function () {
  "use strict";
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  function opened() {
    return Array.from(main.querySelectorAll("details")).map((d) => d.open);
  }
  function focused() {
    const all = Array.from(main.querySelectorAll("a, button, summary, input"));
    return all.indexOf(document.activeElement);
  }
  async function refresh() {
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("main");
        if (fresh) {
          const open = opened();
          const focus = focused();
          main.replaceChildren(...fresh.childNodes);
          main.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
          if (focus >= 0) {
            const again = main.querySelectorAll("a, button, summary, input")[focus];
            if (again) again.focus({ preventScroll: true });
          }
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
