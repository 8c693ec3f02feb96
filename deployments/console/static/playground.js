// The playground: type a turn (or a conversation), watch it stream from this
// router's own /v1/chat/completions, see where it was served and what it
// cost, and copy the request as code. The client key lives in this tab's
// sessionStorage only and leaves the page only as an Authorization header.
(function () {
  "use strict";

  var KEY_STORE = "nemo.playground.key";
  var $ = function (id) { return document.getElementById(id); };
  var apiBase = new URL("v1/", location.href);  // this router, under any route prefix
  var history = [];  // the conversation so far, resent with every turn (as a voice app does)
  var busy = false;

  function key() { return sessionStorage.getItem(KEY_STORE) || ""; }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function setStat(name, value) { $("stat-" + name).textContent = value; }

  function resetStats() {
    ["status", "endpoint", "ttft", "total", "tokens", "cost", "cache", "turn"].forEach(function (n) { setStat(n, "–"); });
  }

  function ms(seconds) { return Math.round(seconds) + " ms"; }

  function usd(value) {
    if (value === null || value === undefined) return "not priced";
    return "$" + Number(value).toFixed(value && value < 0.01 ? 8 : 4).replace(/0+$/, "").replace(/\.$/, ".0");
  }

  // The router's error object, or the HTTP status when the body is not one.
  async function errorMessage(response) {
    var text = await response.text();
    try {
      var body = JSON.parse(text);
      if (body && body.error && body.error.message) return response.status + ": " + body.error.message;
    } catch (e) { /* not JSON */ }
    return response.status + ": " + (text.slice(0, 200) || response.statusText);
  }

  function authHeaders() { return { authorization: "Bearer " + key() }; }

  // -- the key and the model list ---------------------------------------------

  async function loadModels() {
    var response = await fetch(new URL("models", apiBase), { headers: authHeaders() });
    if (!response.ok) {
      showError(await errorMessage(response));
      return false;
    }
    var select = $("model");
    var chosen = select.value;
    select.textContent = "";
    (await response.json()).data.forEach(function (card) {
      var option = document.createElement("option");
      option.value = card.id;
      var price = card.nemo && card.nemo.price_usd_per_mtok;
      option.textContent = card.id + (card.nemo ? " (catalog: " + card.nemo.provider +
        (price ? ", $" + price.input + " / $" + price.output + " per Mtok" : "") + ")" : "");
      select.appendChild(option);
    });
    if (chosen) select.value = chosen;
    return true;
  }

  async function useKey(event) {
    event.preventDefault();
    var value = $("key").value.trim();
    $("key").value = "";
    if (!value) return;
    sessionStorage.setItem(KEY_STORE, value);
    showError("");
    showKeyState();
    if (await loadModels()) $("turn").focus();
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_STORE);
    $("model").textContent = "";
    showKeyState();
  }

  function showKeyState() {
    var has = !!key();
    $("forget-key").hidden = !has;
    $("key-state").textContent = has ? "a key is set for this tab (session storage only)" : "kept in this tab's session storage only";
  }

  // -- a turn -------------------------------------------------------------------

  function requestOf(text) {
    var messages = history.concat([{ role: "user", content: text }]);
    var body = { model: $("model").value, messages: messages, stream: $("stream").checked };
    if (body.stream) body.stream_options = { include_usage: true };
    var tags = $("tags").value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
    if (tags.length) body.nemo_tags = tags;
    if (!$("cache").checked) body.nemo_cache = false;
    var headers = { "content-type": "application/json" };
    var conversation = $("conversation-id").value.trim();
    if (conversation) headers["x-nemo-conversation-id"] = conversation;
    return { body: body, headers: headers };
  }

  function addMessage(role, text) {
    var item = document.createElement("li");
    item.className = role;
    item.textContent = text;
    $("transcript").appendChild(item);
    $("transcript").scrollTop = $("transcript").scrollHeight;
    return item;
  }

  function showCode(request) {
    $("code-curl").textContent = nemoCode.curlCommand(new URL("chat/completions", apiBase).href, request.headers, request.body);
    $("code-python").textContent = nemoCode.pythonSnippet(apiBase.href.replace(/\/$/, ""), request.headers, request.body);
  }

  function showHeaders(response) {
    var h = response.headers;
    setStat("endpoint", h.get("x-nemo-endpoint") || "–");
    setStat("cache", h.get("x-nemo-cache") || "–");
    setStat("turn", h.get("x-nemo-conversation-turn") || "–");
    var cost = h.get("x-nemo-cost-usd");  // a non-streamed turn's; a stream's comes in its usage chunk
    if (cost !== null) setStat("cost", usd(Number(cost)));
    else if (h.get("x-nemo-cache") === "hit") setStat("cost", "$0 (cache hit)");
  }

  function showUsage(usage) {
    if (usage) setStat("tokens", usage.prompt_tokens + " prompt + " + usage.completion_tokens + " completion");
  }

  async function send(event) {
    event.preventDefault();
    var text = $("turn").value.trim();
    if (!text || busy) return;
    if (!key()) { showError("Enter a client key first."); return; }
    if (!$("model").value && !(await loadModels())) return;
    var request = requestOf(text);
    busy = true;
    $("send").disabled = true;
    showError("");
    resetStats();
    showCode(request);
    addMessage("user", text);
    var reply = addMessage("assistant streaming", "");
    var started = performance.now();
    setStat("status", "sending…");
    var replyText = "";
    try {
      var response = await fetch(new URL("chat/completions", apiBase), {
        method: "POST",
        headers: Object.assign({}, request.headers, authHeaders()),
        body: JSON.stringify(request.body),
      });
      if (!response.ok) {
        var message = await errorMessage(response);
        throw new Error(message);
      }
      showHeaders(response);
      if (request.body.stream) {
        replyText = await readStream(response, reply, started);
      } else {
        var completion = await response.json();
        replyText = (completion.choices && completion.choices[0] && completion.choices[0].message.content) || "";
        reply.textContent = replyText;
        setStat("ttft", "– (not streamed)");
        showUsage(completion.usage);
      }
      setStat("total", ms(performance.now() - started));
      setStat("status", "done");
      reply.classList.remove("streaming");
      history = request.body.messages.concat([{ role: "assistant", content: replyText }]);
      $("turn").value = "";
    } catch (error) {
      reply.classList.remove("streaming");
      reply.classList.add("failed");
      if (!reply.textContent) reply.textContent = "(no reply)";
      setStat("status", "failed");
      showError(error.message);
    } finally {
      busy = false;
      $("send").disabled = false;
    }
  }

  // SSE over fetch: events are separated by a blank line; a data line is the
  // event's payload. Returns the reply's text; throws on an error event.
  async function readStream(response, reply, started) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var text = "";
    var pieces = 0;
    for (;;) {
      var read = await reader.read();
      if (read.done) break;
      buffer += decoder.decode(read.value, { stream: true }).replace(/\r\n?/g, "\n");
      var cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        var event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        var data = event.split("\n").filter(function (l) { return l.indexOf("data:") === 0; })
          .map(function (l) { return l.slice(5).replace(/^ /, ""); }).join("\n");
        if (!data || data === "[DONE]") continue;
        var chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || "the stream ended with an error");
        var delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (!text) setStat("ttft", ms(performance.now() - started));
          text += delta.content;
          pieces += 1;
          reply.textContent = text;
          setStat("tokens", "~" + pieces + " completion (streaming)");
          setStat("status", "streaming…");
        }
        if (chunk.usage) showUsage(chunk.usage);
        if (chunk.nemo) {  // the router's note on the usage chunk: who finished the turn, what it cost
          if (chunk.nemo.endpoint) setStat("endpoint", chunk.nemo.endpoint);
          setStat("cost", usd(chunk.nemo.cost_usd));
        }
      }
    }
    return text;
  }

  function newConversation() {
    history = [];
    $("conversation-id").value = "";  // a new call: the router counts its turns from 1 under a new id
    $("transcript").textContent = "";
    resetStats();
    showError("");
  }

  async function copy(event) {
    var text = $(event.target.dataset.target).textContent;
    try {
      await navigator.clipboard.writeText(text);
      event.target.textContent = "Copied";
    } catch (e) {  // no clipboard permission: select it for Ctrl+C
      var range = document.createRange();
      range.selectNodeContents($(event.target.dataset.target));
      var selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      event.target.textContent = "Selected";
    }
    setTimeout(function () { event.target.textContent = "Copy"; }, 1500);
  }

  $("login").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("turn-form").addEventListener("submit", send);
  $("new-conversation").addEventListener("click", newConversation);
  $("turn").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send(event);
  });
  document.querySelectorAll("button.copy").forEach(function (b) { b.addEventListener("click", copy); });
  showKeyState();
  if (key()) loadModels();
})();
