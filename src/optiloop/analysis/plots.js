// Draws plotly figures lazily, shared by the HTML report and the dashboard.
//
// A figure is drawn when its box comes within MARGIN of the viewport, and
// figures are drawn one per task, so the page answers a scroll or a click
// between two heavy figures instead of freezing until all are drawn.  The
// parallel coordinates (WebGL) and a history of thousands of runs take a
// second or more each in a browser without a GPU; only the ones in view
// are on the path to a usable page.  Printing draws every figure first.
//
// Every view div carries data-state: "waiting", then "drawn" (tests and
// benchmarks read it).  A figure given again for a drawn
// div is redrawn in place with Plotly.react, keeping the user's zoom where
// plotly can.
(function () {
  "use strict";

  const MARGIN = "200px";
  const waiting = new Map(); // div -> {figure, config}
  const queue = [];
  let scheduled = false;

  function drawNext() {
    scheduled = false;
    const div = queue.shift();
    if (div === undefined) {
      return;
    }
    const item = waiting.get(div);
    waiting.delete(div);
    if (item !== undefined) {
      draw(div, item.figure, item.config);
    }
    schedule();
  }

  function schedule() {
    if (!scheduled && queue.length > 0) {
      scheduled = true;
      // A macrotask, so that input and painting get their turn in between.
      setTimeout(drawNext, 0);
    }
  }

  function draw(div, figure, config) {
    div.style.minHeight = "";
    const start = performance.now();
    const done = Plotly.react(div, figure.data, figure.layout, config);
    Promise.resolve(done).then(function () {
      // How long the figure took and when it was done, in ms from the
      // page's start: benchmarks/dashboard_render.py reads both.
      div.dataset.drawMs = String(Math.round(performance.now() - start));
      div.dataset.drawnAt = String(Math.round(performance.now()));
      div.dataset.state = "drawn";
      div.dispatchEvent(new CustomEvent("optiloop:drawn", { bubbles: true }));
    });
  }

  function enqueue(div) {
    if (waiting.has(div) && !queue.includes(div)) {
      queue.push(div);
      schedule();
    }
  }

  const observer =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          function (entries) {
            for (const entry of entries) {
              if (entry.isIntersecting) {
                observer.unobserve(entry.target);
                enqueue(entry.target);
              }
            }
          },
          { rootMargin: MARGIN }
        )
      : null;

  // Draw `figure` (plotly JSON: data and layout) in `div`, now if the div
  // shows one already, else once it comes near the viewport.
  function show(div, figure, config) {
    if (div.dataset.state === "drawn") {
      draw(div, figure, config);
      return;
    }
    const height = (figure.layout && figure.layout.height) || 450;
    div.style.minHeight = height + "px";
    div.dataset.state = "waiting";
    waiting.set(div, { figure: figure, config: config });
    if (observer === null) {
      enqueue(div);
    } else {
      observer.observe(div);
    }
  }

  // Draw every waiting figure now, in view or not.  A printout shows only
  // the figures drawn, and the browser lays out the printed page as soon
  // as the print event's handlers return: so here every figure is drawn
  // before returning, not one per task.
  function drawAll() {
    const items = Array.from(waiting);
    waiting.clear();
    queue.length = 0;
    for (const [div, item] of items) {
      if (observer !== null) {
        observer.unobserve(div);
      }
      draw(div, item.figure, item.config);
    }
  }

  // window.print() and the browser's print command fire "beforeprint";
  // print media (print preview, or a headless browser printing to PDF)
  // switch the media query.
  window.addEventListener("beforeprint", drawAll);
  if (window.matchMedia) {
    window.matchMedia("print").addEventListener("change", function (event) {
      if (event.matches) {
        drawAll();
      }
    });
  }

  window.optiloopPlots = { show: show, drawAll: drawAll };
})();
