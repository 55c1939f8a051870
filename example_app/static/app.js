// The document-intake page: direct-to-storage uploads with progress, and a live list.
// Plain ES module, no dependencies. Without JavaScript the page still works: the form
// posts one file to POST /documents, which redirects back here.

const form = document.getElementById("upload-form");
const input = document.getElementById("file");
const dropzone = document.getElementById("dropzone");
const uploads = document.getElementById("uploads");

document.documentElement.classList.add("js");
input.multiple = true; // one request per file: POST /documents itself takes one
let activeUploads = 0; // uploads in flight keep the list polling fast

// ------------------------------------------------------------------ live list
// Polling with backoff, not server-sent events: the records live in a document
// database that has no change feed common to every provider (embedded engine,
// DocumentDB, Cosmos DB), so an SSE endpoint would only poll it on the server, holding
// a connection per tab. Polling the same fragment the page renders needs no new server
// state and works behind any proxy. Fast (0.5 s) while something is pending or just
// changed, then doubling to 10 s while nothing changes; paused in a hidden tab.
const FAST = 500;
const SLOWEST = 10000;

class Poller {
  constructor(element) {
    this.element = element;
    this.url = element.dataset.refresh;
    this.delay = FAST;
    this.timer = null;
    this.last = null;
  }

  pending() {
    // Any document still on its way: the notifications and the audit trail change
    // once it is processed, so every panel keeps polling fast until then.
    return document.querySelector(
      '[data-status="queued"], [data-status="awaiting_upload"]'
    ) !== null;
  }

  async tick() {
    this.timer = null;
    if (document.hidden) return; // resumed by visibilitychange
    let changed = false;
    try {
      const response = await fetch(this.url, { headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error(String(response.status));
      const html = await response.text();
      if (html !== this.last) {
        changed = this.last !== null;
        this.last = html;
        this.element.innerHTML = html;
      }
    } catch (error) {
      // Server restarting or offline: keep backing off, keep the last list.
    }
    this.delay = changed || this.pending() || activeUploads > 0
      ? FAST
      : Math.min(this.delay * 2, SLOWEST);
    this.schedule();
  }

  schedule() {
    if (this.timer === null) this.timer = setTimeout(() => this.tick(), this.delay);
  }

  now() {
    this.delay = FAST;
    clearTimeout(this.timer);
    this.timer = null;
    this.tick();
  }
}

const pollers = [...document.querySelectorAll("[data-refresh]")].map((el) => new Poller(el));
pollers.forEach((poller) => poller.schedule());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) pollers.forEach((poller) => poller.now());
});
const refreshAll = () => pollers.forEach((poller) => poller.now());

// --------------------------------------------------------------------- uploads

function describe(status, body) {
  // FastAPI answers {"detail": "..."}; its validation errors a list of {msg}.
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) return detail.map((d) => d.msg).join("; ");
  return `the server answered ${status}`;
}

async function postJson(url, payload) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) throw new Error(`${response.status}: ${describe(response.status, body)}`);
  return body;
}

async function sha256Hex(file) {
  // Declared to complete, which refuses other bytes. Needs a secure context
  // (https, or localhost) and reads the file into memory, so only for modest files.
  if (!globalThis.crypto || !crypto.subtle || file.size > 32 * 1024 * 1024) return null;
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function put(ticket, file, onProgress) {
  // XHR, not fetch: only XHR reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method, ticket.upload_url);
    for (const [name, value] of Object.entries(ticket.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (error) {
        body = null;
      }
      reject(new Error(`${xhr.status}: ${describe(xhr.status, body)}`));
    });
    xhr.addEventListener("error", () =>
      reject(new Error("the storage refused the upload or could not be reached " +
        "(on a cloud bucket, check its CORS rules)")));
    xhr.send(file);
  });
}

function row(file) {
  const item = document.createElement("li");
  item.className = "upload";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Upload progress of ${file.name}`);
  const percent = document.createElement("span");
  percent.className = "percent";
  percent.textContent = "0%";
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = "waiting";
  item.append(name, bar, percent, state);
  uploads.prepend(item);
  return {
    item,
    progress(fraction) {
      const value = Math.round(fraction * 100);
      bar.value = value;
      percent.textContent = `${value}%`;
    },
    status(text, kind) {
      state.textContent = text;
      item.dataset.state = kind;
    },
  };
}

async function uploadOne(file) {
  const view = row(file);
  activeUploads += 1;
  try {
    view.status("preparing", "active");
    const sha256 = await sha256Hex(file);
    const ticket = await postJson("/documents/upload-url", {
      filename: file.name,
      content_type: file.type || null,
      size: file.size || null,
      ...(sha256 ? { sha256 } : {}),
    });
    view.status("uploading", "active");
    await put(ticket, file, (fraction) => view.progress(fraction));
    view.progress(1);
    view.status("verifying", "active");
    const accepted = await postJson(ticket.complete_url);
    view.item.dataset.id = accepted.id;
    view.status(`uploaded: ${accepted.status}`, "done");
  } catch (error) {
    view.status(`not uploaded: ${error.message}`, "error");
  } finally {
    activeUploads -= 1;
    refreshAll();
  }
}

function uploadAll(files) {
  return Promise.all([...files].map(uploadOne));
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const files = [...input.files];
  input.value = "";
  uploadAll(files);
});

for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
}
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer && event.dataTransfer.files.length) uploadAll(event.dataTransfer.files);
});
