// The optiloop dashboard: a list of experiments and campaigns, and a page
// for each, kept current by polling the JSON routes under /dashboard/api.
//
// The API token lives in sessionStorage and goes out as a bearer header
// (see optiloop/service/dashboard.py for why).  Every string from the
// server is put in the page as text, never as HTML.
"use strict";

const API = "/dashboard/api";
const TOKEN_KEY = "optiloop-token";
const POLL_MS = 3000;
const PLOTLY_CONFIG = { displaylogo: false, responsive: true };

class SignedOut extends Error {}

// Bumped on every navigation, so that a poll of a page left behind stops.
let generation = 0;

// An element with attributes and children; strings become text nodes.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) {
      node.setAttribute(name, value);
    }
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

function app() {
  return document.getElementById("app");
}

function show(...nodes) {
  app().replaceChildren(...nodes);
}

function message(text, kind) {
  return el("p", { class: kind === "error" ? "message error" : "message" }, text);
}

// Plain muted text: an empty list is news, not a warning.
function note(text) {
  return el("p", { class: "note" }, text);
}

function setLive(text, version) {
  const live = document.getElementById("live");
  live.textContent = text;
  if (version !== undefined) {
    live.dataset.version = version;
  }
}

// A count (1,234) or a measure, which is written as the CLI writes it.
function formatNumber(value) {
  if (value === null || value === undefined) {
    return "–";
  }
  if (typeof value !== "number") {
    return String(value);
  }
  if (Number.isInteger(value)) {
    return value.toLocaleString("en");
  }
  return formatG(value);
}

// `value` as Python's format(value, ".4g") writes it, which is how the CLI
// writes values: 4 significant digits without trailing zeros, in exponent
// form below 1e-4 and from 1e4 up (2.5e-05, 1.235e+04).
function formatG(value) {
  const count = 4;
  if (!Number.isFinite(value)) {
    return String(value);
  }
  if (value === 0) {
    return "0";
  }
  const sign = value < 0 ? "-" : "";
  const { figures, exponent } = significantFigures(Math.abs(value), count);
  if (exponent < -4 || exponent >= count) {
    const mantissa = withoutTrailingZeros(`${figures[0]}.${figures.slice(1)}`);
    const power = String(Math.abs(exponent)).padStart(2, "0");
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${power}`;
  }
  const fixed =
    exponent >= 0
      ? `${figures.slice(0, exponent + 1)}.${figures.slice(exponent + 1)}`
      : `0.${"0".repeat(-exponent - 1)}${figures}`;
  return sign + withoutTrailingZeros(fixed);
}

// The first `count` significant figures of a positive number, and the
// power of ten of the first, rounded as Python rounds: to the nearest, a
// tie to even.  JavaScript rounds a tie up, so a tie is looked for in the
// exact figures (toExponential(99) is exact for any number whose figures
// end within 100, as a tie's do).
function significantFigures(value, count) {
  const [mantissa, power] = value.toExponential(count - 1).split("e");
  const [exactMantissa, exactPower] = value.toExponential(99).split("e");
  const exact = exactMantissa.replace(".", "").replace(/0+$/, "");
  const tie = exact.length === count + 1 && exact.endsWith("5");
  if (tie && Number(exact[count - 1]) % 2 === 0) {
    return { figures: exact.slice(0, count), exponent: Number(exactPower) };
  }
  return { figures: mantissa.replace(".", ""), exponent: Number(power) };
}

function withoutTrailingZeros(text) {
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

// A parameter's value as the CLI writes it: an integer whole, else .4g.
function formatAssignment(value) {
  if (typeof value !== "number") {
    return String(value);
  }
  return Number.isInteger(value) ? String(value) : formatG(value);
}

function valuesText(values) {
  return Object.entries(values)
    .map(([name, value]) => `${name} = ${formatG(value)}`)
    .join(", ");
}

function pointText(point) {
  const at = Object.entries(point.assignments)
    .map(([name, value]) => `${name} = ${formatAssignment(value)}`)
    .join(", ");
  return `${valuesText(point.values)} at ${at}`;
}

function statusBadge(status) {
  return el("span", { class: `status ${status}` }, status);
}

// Talking to the server

async function api(path) {
  const response = await fetch(API + path, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
    cache: "no-store",
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("The server did not accept the token; sign in again.");
    throw new SignedOut();
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.message || `the server answered ${response.status}`);
  }
  return body;
}

let plotlyLoading = null;

// plotly.js is 4.8 MB of script: fetched only by the pages that draw.
function loadPlotly() {
  if (plotlyLoading === null) {
    plotlyLoading = loadScript("/static/plotly.min.js").then(() =>
      loadScript("/static/plots.js")
    );
  }
  return plotlyLoading;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = el("script", { src: src });
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

// Repeats `refresh` every POLL_MS until the user navigates away.  A
// hidden tab skips its turns; errors are shown and the polling goes on.
function poll(refresh) {
  const mine = generation;
  async function tick() {
    if (mine !== generation) {
      return;
    }
    if (!document.hidden) {
      try {
        await refresh();
      } catch (error) {
        if (error instanceof SignedOut) {
          return;
        }
        setLive(`Update failed: ${error.message}; retrying.`);
      }
    }
    setTimeout(tick, POLL_MS);
  }
  setTimeout(tick, POLL_MS);
}

function checkedNow(version) {
  const time = new Date().toLocaleTimeString("en-GB");
  setLive(`Live: checked at ${time}, every ${POLL_MS / 1000} s.`, version);
}

// Sign-in

function showLogin(reason) {
  generation += 1;
  document.getElementById("sign-out").hidden = true;
  setLive("");
  const input = el("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: "",
    placeholder: "olt_…",
  });
  const form = el(
    "form",
    { class: "login", id: "login" },
    el("h1", {}, "Sign in"),
    reason ? message(reason, "error") : null,
    el("label", { for: "token" }, "API token"),
    input,
    el("button", { type: "submit" }, "Sign in"),
    el(
      "p",
      { class: "note" },
      "Make one on the server with ",
      el("code", {}, "optiloop token create NAME"),
      ". It is kept in this tab only, and sent with each request as a ",
      "bearer header. The page shows the experiments and campaigns this ",
      "token created, and those run straight on the server's database (",
      el("code", {}, "optiloop run --db"),
      "), which belong to no token."
    )
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  });
  show(form);
  input.focus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  showLogin();
}

// Pages

async function route() {
  generation += 1;
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showLogin();
    return;
  }
  document.getElementById("sign-out").hidden = false;
  const path = location.hash.replace(/^#/, "") || "/";
  const experiment = path.match(/^\/experiments\/(\d+)$/);
  const campaign = path.match(/^\/campaigns\/(\d+)$/);
  try {
    if (experiment) {
      await experimentPage(experiment[1]);
    } else if (campaign) {
      await campaignPage(campaign[1]);
    } else {
      await overviewPage();
    }
  } catch (error) {
    if (!(error instanceof SignedOut)) {
      show(message(`Could not show this page: ${error.message}`, "error"),
           el("p", {}, el("a", { href: "#/" }, "Back to the list")));
    }
  }
}

async function overviewPage() {
  show(el("p", { class: "note" }, "Loading experiments…"));
  const mine = generation;
  const render = (body) => {
    if (mine !== generation) {
      return;
    }
    show(
      el("h1", {}, "Experiments and campaigns"),
      el("h2", {}, "Campaigns"),
      campaignTable(body.campaigns),
      el("h2", {}, "Experiments"),
      experimentTable(body.experiments)
    );
    checkedNow();
  };
  render(await api("/overview"));
  poll(async () => render(await api("/overview")));
}

function experimentTable(rows) {
  if (rows.length === 0) {
    return note(
      "No experiment yet. The ones this token creates through this server " +
        "(optiloop run --server URL --token TOKEN) appear here, and so do " +
        "the ones run straight on its database (optiloop run --db)."
    );
  }
  return el(
    "table",
    { id: "experiments" },
    el("tr", {}, ["id", "name", "status", "budget used", "failed", "best so far"]
      .map((name) => el("th", {}, name))),
    rows.map((row) =>
      el(
        "tr",
        { "data-id": row.id },
        el("td", {}, el("a", { href: `#/experiments/${row.id}` }, String(row.id))),
        el("td", {}, el("a", { href: `#/experiments/${row.id}` }, row.name),
           row.campaign === null ? null
             : el("span", { class: "note" }, ` · campaign ${row.campaign}`)),
        el("td", {}, statusBadge(row.status)),
        el("td", { class: "number" },
           `${formatNumber(row.observations)} / ${formatNumber(row.budget)}`),
        el("td", { class: "number" }, formatNumber(row.failed)),
        el("td", {}, row.best.length ? valuesText(row.best[0].values) +
           (row.best.length > 1 ? ` (+${row.best.length - 1} on the front)` : "")
           : "none feasible yet")
      )
    )
  );
}

function campaignTable(rows) {
  if (rows.length === 0) {
    return note("No campaign yet.");
  }
  return el(
    "table",
    { id: "campaigns" },
    el("tr", {}, ["id", "name", "state", "rounds", "budget used", "best so far"]
      .map((name) => el("th", {}, name))),
    rows.map((row) =>
      el(
        "tr",
        { "data-id": row.id },
        el("td", {}, el("a", { href: `#/campaigns/${row.id}` }, String(row.id))),
        el("td", {}, el("a", { href: `#/campaigns/${row.id}` }, row.name)),
        el("td", {}, statusBadge(row.state)),
        el("td", { class: "number" }, roundsText(row)),
        el("td", { class: "number" },
           `${formatNumber(row.observations)} / ${formatNumber(row.budget)}`),
        el("td", {}, row.best === null ? "none feasible yet" : row.best)
      )
    )
  );
}

function roundsText(campaign) {
  if (campaign.kind === "grid") {
    return "grid search";
  }
  return `${formatNumber(campaign.rounds)} / ${formatNumber(campaign.max_rounds)}`;
}

// A page of figures (an experiment's or a campaign's): the header and
// tables come from `header(body)`, the figures follow in the server's order.
async function figurePage(path, header) {
  show(el("p", { class: "note" }, "Loading…"));
  const mine = generation;
  const [body] = await Promise.all([api(path), loadPlotly()]);
  if (mine !== generation) {
    return; // the user went elsewhere while this page loaded
  }
  const top = el("div", { id: "page-head" });
  const views = el("div", { id: "views" });
  show(top, views);

  let version = null;
  const render = (next) => {
    version = next.version;
    top.replaceChildren(...header(next));
    for (const [id, figure] of Object.entries(next.figures)) {
      let div = document.getElementById(id);
      if (div === null) {
        div = el("div", { id: id, class: "view" });
        views.append(el("section", { class: "view-box" }, div));
      }
      window.optiloopPlots.show(div, figure, PLOTLY_CONFIG);
    }
    checkedNow(version);
  };
  render(body);
  poll(async () => {
    const next = await api(`${path}?since=${encodeURIComponent(version)}`);
    if (next.changed) {
      render(next);
    } else {
      checkedNow(version);
    }
  });
}

function experimentPage(id) {
  return figurePage(`/experiments/${id}`, (body) => {
    const compute =
      body.compute_hours === null
        ? "not recorded"
        : `${formatNumber(body.compute_hours)} h` +
          (body.compute_recorded < body.observations
            ? `, recorded by ${body.compute_recorded} of the observations`
            : "");
    const bestLabel = body.best.length > 1 ? "Pareto front" : "Best point";
    const best = body.best.length
      ? body.best.map((point) => el("div", {}, pointText(point)))
      : "no run has met every threshold yet";
    const rows = [
      ["Status", statusBadge(body.status)],
      ["Budget used", `${formatNumber(body.observations)} / ${formatNumber(body.budget)}`],
      ["Met every threshold", formatNumber(body.feasible)],
      ["Missed a threshold", formatNumber(body.infeasible)],
      ["Failed", formatNumber(body.failed)],
      ["Compute", compute],
      [bestLabel, best],
    ];
    const nodes = [
      el("h1", {}, `Experiment ${body.id}: ${body.name}`),
      el("p", { class: "subtitle" },
         body.campaign === null ? "" : el("a", { href: `#/campaigns/${body.campaign}` },
                                          `Part of campaign ${body.campaign}`)),
      summaryTable(rows),
    ];
    if (body.observations === 0) {
      nodes.push(note("No observations yet: the views fill in as runs report."));
    } else if (body.failed === body.observations) {
      nodes.push(message("Every run so far failed: nothing to plot but the failures."));
    }
    return nodes;
  });
}

function summaryTable(rows) {
  return el(
    "table",
    { class: "summary", id: "summary" },
    rows.map(([name, cell]) => el("tr", {}, el("th", {}, name), el("td", {}, cell)))
  );
}

function campaignPage(id) {
  return figurePage(`/campaigns/${id}`, (body) => {
    const nodes = [
      el("h1", {}, `Campaign ${body.id}: ${body.name}`),
      summaryTable([
        ["State", statusBadge(body.state)],
        ["Rounds", roundsText(body)],
        ["Budget used", `${formatNumber(body.observations)} / ${formatNumber(body.budget)}`],
        ["Best so far", body.best === null ? "none feasible yet" : body.best],
        ["Stopped because", body.stopped_because || "–"],
      ]),
      el("h2", {}, "Experiments"),
      dataTable(
        ["experiment", "role", "round", "observations", "status", "best"],
        body.experiments.map((row) => [
          el("a", { href: `#/experiments/${row.id}` }, `${row.id}: ${row.name}`),
          row.role || "–",
          formatNumber(row.round),
          `${formatNumber(row.observations)} / ${formatNumber(row.budget)}`,
          statusBadge(row.status),
          row.best.length ? valuesText(row.best[0].values) : "none feasible",
        ]),
        "campaign-experiments"
      ),
    ];
    if (body.kind !== "grid") {
      nodes.push(
        el("h2", {}, "Refinements: why each round's bounds"),
        body.refinements.length
          ? dataTable(["round", "parameter", "bounds", "reason"], body.refinements.map(
              (row) => [formatNumber(row.round), row.parameter, row.bounds, row.reason]),
              "refinements")
          : note("No refinement yet: round 1 searches the file's bounds.")
      );
    }
    for (const table of body.tables) {
      nodes.push(el("h2", {}, table.title));
      nodes.push(dataTable(table.columns, table.rows, table.id));
    }
    return nodes;
  });
}

function dataTable(columns, rows, id) {
  return el(
    "table",
    { id: id },
    el("tr", {}, columns.map((name) => el("th", {}, name))),
    rows.map((row) => el("tr", {}, row.map((cell) =>
      el("td", typeof cell === "number" ? { class: "number" } : {},
         typeof cell === "number" ? formatNumber(cell) : cell))))
  );
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  route();
});
