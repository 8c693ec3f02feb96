// "Copy as code": the `curl` command and the `openai` Python snippet that
// send exactly the request the playground sent (the same JSON body, the same
// nemo headers), with the key read from the environment ($NEMO_API_KEY),
// never written out. Pure functions, no DOM: tests/test_playground_code.py
// runs them in Chromium and checks what bash and Python make of the output.
(function (global) {
  "use strict";

  var KEY_ENV = "NEMO_API_KEY";
  // Parameters of the SDK's chat.completions.create; any other body field
  // (nemo_tags, nemo_cache, ...) goes through extra_body, unchanged.
  var SDK_PARAMS = [
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "n", "stop", "seed", "user", "metadata", "tools", "tool_choice",
    "response_format", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
  ];
  // Headers the SDK or the shell sets itself; the rest are passed on as is.
  var OWN_HEADERS = ["authorization", "content-type"];

  // A string as one bash word: single quotes, a quote inside as '\''.
  function shellQuote(text) {
    return "'" + String(text).split("'").join("'\\''") + "'";
  }

  function extraHeaders(headers) {
    return Object.keys(headers || {})
      .filter(function (name) { return OWN_HEADERS.indexOf(name.toLowerCase()) < 0; })
      .map(function (name) { return [name, String(headers[name])]; });
  }

  function curlCommand(url, headers, body) {
    var lines = ["curl" + (body.stream ? " -N" : "") + " " + shellQuote(url)];
    lines.push('-H "Authorization: Bearer $' + KEY_ENV + '"');
    lines.push("-H " + shellQuote("content-type: application/json"));
    extraHeaders(headers).forEach(function (pair) { lines.push("-H " + shellQuote(pair[0] + ": " + pair[1])); });
    lines.push("-d " + shellQuote(JSON.stringify(body)));
    return lines.join(" \\\n  ");
  }

  // A JSON value as a Python literal (JSON's string escapes are Python's).
  function pyLiteral(value, indent) {
    var pad = indent || "";
    var inner = pad + "    ";
    if (value === null || value === undefined) return "None";
    if (value === true) return "True";
    if (value === false) return "False";
    if (typeof value === "number") return isFinite(value) ? JSON.stringify(value) : "None";
    if (typeof value === "string") return JSON.stringify(value);
    if (Array.isArray(value)) {
      if (!value.length) return "[]";
      if (value.every(function (v) { return v === null || typeof v !== "object"; })) {  // tags: one line
        return "[" + value.map(function (v) { return pyLiteral(v, pad); }).join(", ") + "]";
      }
      return "[\n" + value.map(function (v) { return inner + pyLiteral(v, inner) + ",\n"; }).join("") + pad + "]";
    }
    var keys = Object.keys(value);
    if (!keys.length) return "{}";
    var flat = keys.every(function (k) { return value[k] === null || typeof value[k] !== "object"; });
    if (flat && keys.length <= 3) {  // a message or stream_options: one line
      return "{" + keys.map(function (k) { return JSON.stringify(k) + ": " + pyLiteral(value[k], pad); }).join(", ") + "}";
    }
    return "{\n" + keys.map(function (k) {
      return inner + JSON.stringify(k) + ": " + pyLiteral(value[k], inner) + ",\n";
    }).join("") + pad + "}";
  }

  function isIdentifier(name) { return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name); }

  function pythonSnippet(baseUrl, headers, body) {
    var args = [];
    var extra = {};
    Object.keys(body).forEach(function (name) {
      if (SDK_PARAMS.indexOf(name) >= 0 && isIdentifier(name)) args.push([name, body[name]]);
      else extra[name] = body[name];
    });
    var lines = [
      "import os",
      "",
      "from openai import OpenAI",
      "",
      "client = OpenAI(base_url=" + JSON.stringify(baseUrl) + ', api_key=os.environ["' + KEY_ENV + '"])',
      (body.stream ? "stream" : "completion") + " = client.chat.completions.create(",
    ];
    args.forEach(function (pair) { lines.push("    " + pair[0] + "=" + pyLiteral(pair[1], "    ") + ","); });
    if (Object.keys(extra).length) lines.push("    extra_body=" + pyLiteral(extra, "    ") + ",");
    var sent = {};
    extraHeaders(headers).forEach(function (pair) { sent[pair[0]] = pair[1]; });
    if (Object.keys(sent).length) lines.push("    extra_headers=" + pyLiteral(sent, "    ") + ",");
    lines.push(")");
    if (body.stream) {
      lines.push(
        "for chunk in stream:",
        "    if chunk.choices:",
        '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
        "print()"
      );
    } else {
      lines.push("print(completion.choices[0].message.content)");
    }
    return lines.join("\n") + "\n";
  }

  global.nemoCode = { curlCommand: curlCommand, pythonSnippet: pythonSnippet, shellQuote: shellQuote, pyLiteral: pyLiteral };
})(window);
