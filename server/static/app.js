/*
 * OpenKruise FAQ chat page.
 *
 * Plain JS, no dependencies, no network access other than POST /api/ask.
 * Every piece of data (the user's text, FAQ content, server messages) is put
 * into the DOM with createElement/textContent only; nothing is ever parsed as
 * HTML. The small markdown renderer below builds DOM nodes directly.
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------
  // Interface strings
  // ---------------------------------------------------------------------------

  var STRINGS = {
    en: {
      subtitle: 'Answer bot',
      skip: 'Skip to the question box',
      switchTo: '中文',
      switchLabel: '切换到中文',
      emptyTitle: 'Ask the OpenKruise FAQ',
      emptyText: 'Answers come straight from the OpenKruise FAQ. Ask in English or Chinese.',
      examples: 'Try one of these:',
      logLabel: 'Conversation',
      inputLabel: 'Your question',
      placeholder: 'Ask a question about OpenKruise…',
      send: 'Send',
      hint: 'Enter to send · Shift+Enter for a new line',
      thinking: 'Thinking…',
      section: 'Section',
      confidence: 'Confidence',
      didYouMean: 'Did you mean:',
      noAnswerTitle: 'There is no good answer to this in the FAQ.',
      nearest: 'The nearest questions are:',
      rephrase: 'Try rephrasing the question, or ask in the other language.',
      copy: 'Copy',
      copied: 'Copied',
      copyFailed: 'Copy failed',
      copiedStatus: 'Code copied to the clipboard',
      code: 'code',
      errorPrefix: 'Error:',
      retry: 'Retry',
      networkError: 'Network error: the server could not be reached.',
      timeoutError: 'The server took too long to answer.',
      badResponse: 'The server sent an unexpected response (HTTP {status}).',
      unexpected: 'Something went wrong while showing the answer.',
      retryAfter: 'Try again in {s} s.'
    },
    zh: {
      subtitle: '问答机器人',
      skip: '跳到提问框',
      switchTo: 'English',
      switchLabel: 'Switch to English',
      emptyTitle: '向 OpenKruise FAQ 提问',
      emptyText: '答案直接来自 OpenKruise 常见问题。可以用中文或英文提问。',
      examples: '试试这些问题：',
      logLabel: '对话',
      inputLabel: '你的问题',
      placeholder: '输入关于 OpenKruise 的问题…',
      send: '发送',
      hint: 'Enter 发送 · Shift+Enter 换行',
      thinking: '思考中…',
      section: '章节',
      confidence: '置信度',
      didYouMean: '你是不是想问：',
      noAnswerTitle: 'FAQ 中没有这个问题的合适答案。',
      nearest: '最接近的问题：',
      rephrase: '试试换一种说法，或者用另一种语言提问。',
      copy: '复制',
      copied: '已复制',
      copyFailed: '复制失败',
      copiedStatus: '代码已复制到剪贴板',
      code: '代码',
      errorPrefix: '出错了：',
      retry: '重试',
      networkError: '网络错误：无法连接到服务器。',
      timeoutError: '服务器响应超时。',
      badResponse: '服务器返回了无法识别的响应（HTTP {status}）。',
      unexpected: '显示答案时出现了问题。',
      retryAfter: '请在 {s} 秒后重试。'
    }
  };

  var LANG_KEY = 'okfaq.lang';
  var REQUEST_TIMEOUT_MS = 30000;
  var COPY_FEEDBACK_MS = 2000;

  var lang = initialLang();

  function initialLang() {
    var saved = null;
    try { saved = window.localStorage.getItem(LANG_KEY); } catch (e) { /* storage disabled */ }
    if (saved === 'zh' || saved === 'en') return saved;
    var prefs = (navigator.languages && navigator.languages.length) ? navigator.languages : [navigator.language || ''];
    return /^zh\b/i.test(String(prefs[0] || '')) ? 'zh' : 'en';
  }

  function t(key, args) {
    var table = STRINGS[lang] || STRINGS.en;
    var s = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : (STRINGS.en[key] || key);
    if (args) {
      s = s.replace(/\{(\w+)\}/g, function (m, name) {
        return Object.prototype.hasOwnProperty.call(args, name) ? String(args[name]) : m;
      });
    }
    return s;
  }

  /** Give an element interface text that follows the language switch. */
  function setI18n(node, key, args) {
    node.setAttribute('data-i18n', key);
    if (args) node.setAttribute('data-i18n-args', JSON.stringify(args));
    else node.removeAttribute('data-i18n-args');
    node.textContent = t(key, args);
    return node;
  }

  function applyLang() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    var nodes = document.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      var args = null;
      var raw = n.getAttribute('data-i18n-args');
      if (raw) { try { args = JSON.parse(raw); } catch (e) { args = null; } }
      n.textContent = t(n.getAttribute('data-i18n'), args);
    }
    var attrNodes = document.querySelectorAll('[data-i18n-attr]');
    for (var j = 0; j < attrNodes.length; j++) {
      var spec = attrNodes[j].getAttribute('data-i18n-attr').split(',');
      for (var k = 0; k < spec.length; k++) {
        var pair = spec[k].split(':');
        if (pair.length === 2) attrNodes[j].setAttribute(pair[0].trim(), t(pair[1].trim()));
      }
    }
    var sw = document.getElementById('lang-switch');
    if (sw) {
      sw.textContent = t('switchTo');
      sw.setAttribute('aria-label', t('switchLabel'));
      sw.setAttribute('lang', lang === 'zh' ? 'en' : 'zh');
    }
  }

  function toggleLang() {
    lang = lang === 'zh' ? 'en' : 'zh';
    try { window.localStorage.setItem(LANG_KEY, lang); } catch (e) { /* storage disabled */ }
    applyLang();
  }

  // ---------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function contentLang(code) {
    if (code === 'zh') return 'zh-CN';
    if (code === 'en') return 'en';
    return '';
  }

  // ---------------------------------------------------------------------------
  // Safe markdown renderer (DOM only)
  // ---------------------------------------------------------------------------

  var SAFE_PROTOCOLS = { 'http:': true, 'https:': true, 'mailto:': true };

  /** Returns a normalized absolute URL for http/https/mailto, else null. */
  function safeUrl(raw) {
    if (typeof raw !== 'string') return null;
    var s = raw.trim();
    if (s.charAt(0) === '<' && s.charAt(s.length - 1) === '>') s = s.slice(1, -1).trim();
    if (!s || /[\u0000-\u001f\u007f\s]/.test(s)) return null;
    if (!/^(https?:\/\/|mailto:)/i.test(s)) return null;
    var u;
    try { u = new URL(s); } catch (e) { return null; }
    if (!SAFE_PROTOCOLS[u.protocol]) return null;
    return u.href;
  }

  function makeLink(href, children) {
    var a = el('a');
    a.href = href;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    appendAll(a, children);
    return a;
  }

  function appendAll(parent, nodes) {
    for (var i = 0; i < nodes.length; i++) parent.appendChild(nodes[i]);
    return parent;
  }

  /** Merge adjacent strings, turn strings into text nodes (with <br> for newlines). */
  function finishInline(parts) {
    var out = [];
    var buf = '';
    function flush() {
      if (!buf) return;
      var lines = buf.split('\n');
      for (var i = 0; i < lines.length; i++) {
        if (i > 0) out.push(document.createElement('br'));
        if (lines[i]) out.push(document.createTextNode(lines[i]));
      }
      buf = '';
    }
    for (var i = 0; i < parts.length; i++) {
      if (typeof parts[i] === 'string') buf += parts[i];
      else { flush(); out.push(parts[i]); }
    }
    flush();
    return out;
  }

  /** Find the index of the `]` matching the `[` at `start`, or -1. */
  function matchBracket(s, start) {
    var depth = 0;
    for (var i = start; i < s.length; i++) {
      var c = s.charAt(i);
      if (c === '\\') { i++; continue; }
      if (c === '`') {
        // skip code spans inside link text
        var run = /^`+/.exec(s.slice(i))[0];
        var close = s.indexOf(run, i + run.length);
        if (close !== -1) { i = close + run.length - 1; continue; }
      }
      if (c === '[') depth++;
      else if (c === ']') { depth--; if (depth === 0) return i; }
    }
    return -1;
  }

  /** Parse `(url "title")` at `start` (which must be '('); returns {url, end} or null. */
  function parseLinkTarget(s, start) {
    if (s.charAt(start) !== '(') return null;
    var i = start + 1;
    var depth = 1;
    for (; i < s.length; i++) {
      var c = s.charAt(i);
      if (c === '\\') { i++; continue; }
      if (c === '(') depth++;
      else if (c === ')') { depth--; if (depth === 0) break; }
      else if (c === '\n') return null;
    }
    if (depth !== 0) return null;
    var inner = s.slice(start + 1, i).trim();
    // drop an optional title: url "title" / url 'title'
    var m = /^(\S+)\s+(?:"[^"]*"|'[^']*')$/.exec(inner);
    var url = m ? m[1] : inner;
    return { url: url, end: i + 1 };
  }

  var ESCAPABLE = '\\`*_{}[]()#+-.!|~<>"\'';
  var BARE_URL = /^(https?:\/\/[^\s<>"'`\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+)/i;

  /**
   * Inline markdown -> array of DOM nodes.
   * Supports: `code`, **bold** and __bold__, *em* and _em_, ~~del~~, [text](url),
   * ![alt](url) (shown as a link, never loaded), <https://autolinks>, bare URLs,
   * backslash escapes. Everything else is literal text.
   */
  function renderInline(src, noLinks) {
    var parts = [];
    var text = '';
    var i = 0;
    var n = src.length;

    function push(node) {
      if (text) { parts.push(text); text = ''; }
      parts.push(node);
    }

    while (i < n) {
      var c = src.charAt(i);
      var rest;

      // backslash escape
      if (c === '\\' && i + 1 < n && ESCAPABLE.indexOf(src.charAt(i + 1)) !== -1) {
        text += src.charAt(i + 1);
        i += 2;
        continue;
      }

      // code span
      if (c === '`') {
        var run = /^`+/.exec(src.slice(i))[0];
        var close = findCodeClose(src, i + run.length, run.length);
        if (close !== -1) {
          var code = src.slice(i + run.length, close).replace(/\n/g, ' ');
          if (code.length > 2 && code.charAt(0) === ' ' && code.charAt(code.length - 1) === ' ' && code.trim()) {
            code = code.slice(1, -1);
          }
          push(el('code', null, code));
          i = close + run.length;
          continue;
        }
        text += run;
        i += run.length;
        continue;
      }

      // images and links: ![alt](url) / [text](url)
      if (c === '[' || (c === '!' && src.charAt(i + 1) === '[')) {
        var isImage = c === '!';
        var open = isImage ? i + 1 : i;
        var closeBr = matchBracket(src, open);
        if (closeBr !== -1 && src.charAt(closeBr + 1) === '(') {
          var target = parseLinkTarget(src, closeBr + 1);
          if (target) {
            var label = src.slice(open + 1, closeBr);
            var href = noLinks ? null : safeUrl(target.url);
            var kids = renderInline(label || target.url, true);
            if (href) push(makeLink(href, kids));
            else { for (var k = 0; k < kids.length; k++) push(kids[k]); }
            i = target.end;
            continue;
          }
        }
      }

      // autolink <https://...>
      if (c === '<') {
        var am = /^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i.exec(src.slice(i));
        if (am) {
          var ahref = noLinks ? null : safeUrl(am[1]);
          if (ahref) push(makeLink(ahref, [document.createTextNode(am[1].replace(/^mailto:/i, ''))]));
          else text += am[1];
          i += am[0].length;
          continue;
        }
      }

      // bare URL
      if ((c === 'h' || c === 'H') && !noLinks && (i === 0 || !/[\w\/]/.test(src.charAt(i - 1)))) {
        var bm = BARE_URL.exec(src.slice(i));
        if (bm) {
          var url = bm[1].replace(/[.,;:!?'")\]]+$/, '');
          var bhref = safeUrl(url);
          if (bhref && url.length > 8) {
            push(makeLink(bhref, [document.createTextNode(url)]));
            i += url.length;
            continue;
          }
        }
      }

      // strong / emphasis / strikethrough
      if (c === '*' || c === '_' || c === '~') {
        rest = src.slice(i);
        var dm = /^(\*\*\*|___|\*\*|__|\*|_|~~)/.exec(rest);
        if (dm) {
          var delim = dm[1];
          var prev = i > 0 ? src.charAt(i - 1) : ' ';
          var nextCh = src.charAt(i + delim.length);
          var leftOk = nextCh && !/\s/.test(nextCh);
          // intraword underscores (snake_case) are literal
          if (delim.charAt(0) === '_' && /[0-9A-Za-z]/.test(prev)) leftOk = false;
          if (leftOk) {
            var end = findCloser(src, i + delim.length, delim);
            if (end !== -1) {
              var inner = src.slice(i + delim.length, end);
              var node;
              if (delim.length === 3) {
                node = el('strong');
                node.appendChild(appendAll(el('em'), renderInline(inner, noLinks)));
              } else {
                node = el(delim === '~~' ? 'del' : (delim.length === 2 ? 'strong' : 'em'));
                appendAll(node, renderInline(inner, noLinks));
              }
              push(node);
              i = end + delim.length;
              continue;
            }
          }
          text += delim;
          i += delim.length;
          continue;
        }
      }

      text += c;
      i++;
    }
    if (text) parts.push(text);
    return finishInline(parts);
  }

  /** Index of the next backtick run of exactly `len` backticks at or after `from`, or -1. */
  function findCodeClose(src, from, len) {
    var i = src.indexOf('`', from);
    while (i !== -1) {
      var j = i;
      while (src.charAt(j) === '`') j++;
      if (j - i === len) return i;
      i = src.indexOf('`', j);
    }
    return -1;
  }

  /** Find a closing delimiter for emphasis starting the search at `from`. */
  function findCloser(src, from, delim) {
    var i = from;
    while (i < src.length) {
      var c = src.charAt(i);
      if (c === '\\') { i += 2; continue; }
      if (c === '`') {
        var run = /^`+/.exec(src.slice(i))[0];
        var close = src.indexOf(run, i + run.length);
        if (close !== -1) { i = close + run.length; continue; }
        i += run.length;
        continue;
      }
      if (src.substr(i, delim.length) === delim) {
        var before = src.charAt(i - 1);
        var after = src.charAt(i + delim.length);
        var single = delim.length === 1;
        // a single `*` must not be part of a `**` pair
        var partOfDouble = single && (after === delim || (i > from && src.charAt(i - 1) === delim));
        if (i > from && !/\s/.test(before) && !partOfDouble) {
          if (delim.charAt(0) === '_' && /[0-9A-Za-z]/.test(after || '')) { i++; continue; }
          return i;
        }
        if (single && after === delim) { i += 2; continue; }
      }
      i++;
    }
    return -1;
  }

  // --- block level -----------------------------------------------------------

  var FENCE_OPEN = /^( *)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
  var HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  var HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var QUOTE = /^ {0,3}> ?(.*)$/;
  var LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])([ \t]+(.*))?$/;

  function expandTabs(line) {
    // tabs in the leading indentation count as 4 spaces
    return line.replace(/^[ \t]+/, function (ws) { return ws.replace(/\t/g, '    '); });
  }

  function indentOf(line) {
    return /^ */.exec(line)[0].length;
  }

  function isBlank(line) {
    return /^\s*$/.test(line);
  }

  function listMarker(line) {
    var m = LIST_ITEM.exec(line);
    if (!m) return null;
    if (HR.test(line)) return null;
    var marker = m[2];
    var ordered = /\d/.test(marker);
    var content = m[4] || '';
    var spacing = m[3] ? m[3].length - content.length : 1;
    if (spacing > 4) spacing = 1;
    return {
      indent: m[1].length,
      ordered: ordered,
      bullet: ordered ? marker.slice(-1) : marker,
      start: ordered ? parseInt(marker, 10) : 1,
      content: content,
      contentIndent: m[1].length + marker.length + spacing
    };
  }

  function startsBlock(line) {
    return FENCE_OPEN.test(line) || HEADING.test(line) || HR.test(line) || QUOTE.test(line) || !!listMarker(line);
  }

  function dedent(line, amount) {
    var k = 0;
    while (k < amount && line.charAt(k) === ' ') k++;
    return line.slice(k);
  }

  /**
   * Render markdown into `container`.
   * ctx: { commands: [...], blocks: [] } — every fenced block is recorded in
   * ctx.blocks so the caller can attach the exact `commands` code to it.
   */
  function renderBlocks(lines, container, ctx) {
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];

      if (isBlank(line)) { i++; continue; }

      // fenced code block
      var fm = FENCE_OPEN.exec(line);
      if (fm) {
        var fenceIndent = fm[1].length;
        var fence = fm[2];
        var info = fm[3] || '';
        var body = [];
        i++;
        while (i < lines.length) {
          var l = lines[i];
          var closeRe = new RegExp('^ *' + (fence.charAt(0) === '`' ? '`' : '~') + '{' + fence.length + ',}\\s*$');
          if (closeRe.test(l)) { i++; break; }
          body.push(dedent(l, fenceIndent));
          i++;
        }
        container.appendChild(commandBlock(body.join('\n'), info, ctx));
        continue;
      }

      // heading
      var hm = HEADING.exec(line);
      if (hm) {
        var level = Math.min(6, hm[1].length + 2);
        var h = el('h' + level, 'md-h');
        appendAll(h, renderInline(hm[2] || ''));
        container.appendChild(h);
        i++;
        continue;
      }

      // thematic break
      if (HR.test(line)) {
        container.appendChild(el('hr'));
        i++;
        continue;
      }

      // blockquote
      if (QUOTE.test(line)) {
        var qlines = [];
        while (i < lines.length) {
          var qm = QUOTE.exec(lines[i]);
          if (qm) { qlines.push(qm[1]); i++; continue; }
          // lazy continuation of a paragraph inside the quote
          if (!isBlank(lines[i]) && qlines.length && !isBlank(qlines[qlines.length - 1]) && !startsBlock(lines[i])) {
            qlines.push(lines[i]);
            i++;
            continue;
          }
          break;
        }
        var bq = el('blockquote');
        renderBlocks(qlines, bq, ctx);
        container.appendChild(bq);
        continue;
      }

      // list
      var lm = listMarker(line);
      if (lm) {
        i = renderList(lines, i, container, ctx);
        continue;
      }

      // paragraph
      var para = [];
      while (i < lines.length && !isBlank(lines[i]) && (para.length === 0 || !startsBlock(lines[i]))) {
        para.push(lines[i].trim());
        i++;
      }
      // a setext underline (===/---) would be rare in FAQ answers; treat as text
      var p = el('p');
      appendAll(p, renderInline(para.join('\n')));
      container.appendChild(p);
    }
  }

  function renderList(lines, i, container, ctx) {
    var first = listMarker(lines[i]);
    var list = el(first.ordered ? 'ol' : 'ul');
    if (first.ordered && first.start !== 1) list.start = first.start;
    var base = first.indent;
    var loose = false;

    while (i < lines.length) {
      var m = listMarker(lines[i]);
      if (!m || m.indent > base + 1 || m.indent + 1 < base || m.ordered !== first.ordered || m.bullet !== first.bullet) break;

      var item = [m.content];
      var cIndent = m.contentIndent;
      var inFence = FENCE_OPEN.test(m.content) ? m.content.trim().slice(0, 3) : null;
      var sawBlank = false;
      i++;

      while (i < lines.length) {
        var l = lines[i];
        if (inFence) {
          if (new RegExp('^ *' + (inFence.charAt(0) === '`' ? '`' : '~') + '{3,}\\s*$').test(l)) inFence = null;
          item.push(dedent(l, cIndent));
          i++;
          continue;
        }
        if (isBlank(l)) {
          // keep going only if the next non-blank line belongs to this item
          var j = i + 1;
          while (j < lines.length && isBlank(lines[j])) j++;
          if (j < lines.length && indentOf(lines[j]) >= Math.min(cIndent, base + 2)) {
            for (; i < j; i++) item.push('');
            sawBlank = true;
            continue;
          }
          if (j < lines.length) {
            var nm = listMarker(lines[j]);
            if (nm && nm.indent <= base + 1 && nm.ordered === first.ordered && nm.bullet === first.bullet) loose = true;
          }
          break;
        }
        var ind = indentOf(l);
        if (ind >= base + 2) {
          var d = dedent(l, Math.min(ind, cIndent));
          var fo = FENCE_OPEN.exec(d);
          if (fo) inFence = fo[2];
          item.push(d);
          i++;
          continue;
        }
        if (listMarker(l) || startsBlock(l) || sawBlank) break;
        // lazy continuation line
        item.push(l.trim());
        i++;
      }

      var li = el('li');
      renderBlocks(item, li, ctx);
      list.appendChild(li);
      if (sawBlank) loose = true;

      // skip blank lines between items of the same list
      var k = i;
      while (k < lines.length && isBlank(lines[k])) k++;
      if (k > i && k < lines.length) {
        var nxt = listMarker(lines[k]);
        if (nxt && nxt.indent <= base + 1 && nxt.ordered === first.ordered && nxt.bullet === first.bullet) { i = k; loose = true; continue; }
      }
    }

    if (!loose) {
      // tight list: unwrap single paragraphs
      var items = list.children;
      for (var q = 0; q < items.length; q++) {
        var ps = items[q].children;
        for (var r = ps.length - 1; r >= 0; r--) {
          var child = ps[r];
          if (child.tagName === 'P') {
            while (child.firstChild) items[q].insertBefore(child.firstChild, child);
            items[q].removeChild(child);
          }
        }
      }
    }
    container.appendChild(list);
    return i;
  }

  function renderMarkdown(src, commands) {
    var root = el('div', 'md');
    var ctx = { blocks: [] };
    var text = String(src || '').replace(/\r\n?/g, '\n');
    var lines = text.split('\n').map(expandTabs);
    renderBlocks(lines, root, ctx);

    var cmds = Array.isArray(commands) ? commands.filter(function (c) { return c && typeof c.code === 'string'; }) : [];
    if (cmds.length && ctx.blocks.length === cmds.length) {
      // the fenced blocks are exactly the commands: copy/show the server's code verbatim
      for (var i = 0; i < cmds.length; i++) {
        ctx.blocks[i].setCode(cmds[i].code, cmds[i].language);
      }
    } else if (cmds.length && ctx.blocks.length === 0) {
      for (var j = 0; j < cmds.length; j++) {
        root.appendChild(commandBlock(cmds[j].code, cmds[j].language || '', ctx));
      }
    }
    return root;
  }

  // --- code blocks with copy button -----------------------------------------

  function commandBlock(code, language, ctx) {
    var wrap = el('div', 'command');
    var head = el('div', 'command-head');
    var label = el('span', 'command-lang');
    var btn = el('button', 'copy');
    btn.type = 'button';
    setI18n(btn, 'copy');
    var pre = el('pre');
    pre.tabIndex = 0; // horizontally scrollable region must be keyboard reachable
    var codeEl = el('code');
    pre.appendChild(codeEl);
    head.appendChild(label);
    head.appendChild(btn);
    wrap.appendChild(head);
    wrap.appendChild(pre);

    var current = '';
    function setCode(c, lng) {
      current = String(c);
      codeEl.textContent = current;
      var name = String(lng || '').trim();
      if (name) {
        label.removeAttribute('data-i18n');
        label.textContent = name;
        codeEl.className = 'language-' + name.replace(/[^\w+#.-]/g, '');
        wrap.setAttribute('data-language', name);
        pre.setAttribute('aria-label', name);
      } else {
        setI18n(label, 'code');
        codeEl.removeAttribute('class');
        wrap.removeAttribute('data-language');
        pre.removeAttribute('aria-label');
      }
    }
    setCode(code, language);

    var resetTimer = null;
    btn.addEventListener('click', function () {
      copyText(current).then(function (ok) {
        setI18n(btn, ok ? 'copied' : 'copyFailed');
        btn.classList.toggle('is-copied', ok);
        btn.classList.toggle('is-failed', !ok);
        if (ok) announce(t('copiedStatus'));
        if (resetTimer) clearTimeout(resetTimer);
        resetTimer = setTimeout(function () {
          setI18n(btn, 'copy');
          btn.classList.remove('is-copied', 'is-failed');
        }, COPY_FEEDBACK_MS);
      });
    });

    if (ctx) ctx.blocks.push({ setCode: setCode });
    return wrap;
  }

  function copyText(text) {
    if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function' && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(
        function () { return true; },
        function () { return fallbackCopy(text); }
      );
    }
    return Promise.resolve(fallbackCopy(text));
  }

  function fallbackCopy(text) {
    var active = document.activeElement;
    var ta = el('textarea', 'clipboard-helper');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.setAttribute('aria-hidden', 'true');
    ta.tabIndex = -1;
    document.body.appendChild(ta);
    var ok = false;
    try {
      ta.select();
      ta.setSelectionRange(0, text.length);
      ok = document.execCommand('copy');
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(ta);
    if (active && typeof active.focus === 'function') active.focus();
    return !!ok;
  }

  // ---------------------------------------------------------------------------
  // Chat
  // ---------------------------------------------------------------------------

  var log, input, sendBtn, form, emptyState, scroller, statusEl;
  var inFlight = false;

  function announce(msg) {
    if (!statusEl) return;
    statusEl.textContent = '';
    // a separate task so repeated messages are announced again
    setTimeout(function () { statusEl.textContent = msg; }, 50);
  }

  function prefersReducedMotion() {
    return window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  }

  function scrollToMessage(node) {
    var behavior = prefersReducedMotion() ? 'auto' : 'smooth';
    var tall = scroller && node.offsetHeight > scroller.clientHeight * 0.8;
    node.scrollIntoView({ block: tall ? 'start' : 'end', behavior: behavior });
  }

  /** Show a finished answer: if it is tall, put the question at the top. */
  function revealAnswer(userMsg, botMsg) {
    var behavior = prefersReducedMotion() ? 'auto' : 'smooth';
    var tall = scroller && (userMsg.offsetHeight + botMsg.offsetHeight) > scroller.clientHeight * 0.85;
    if (tall) userMsg.scrollIntoView({ block: 'start', behavior: behavior });
    else botMsg.scrollIntoView({ block: 'end', behavior: behavior });
  }

  function addUserMessage(text) {
    var msg = el('div', 'msg user', text);
    log.appendChild(msg);
    return msg;
  }

  function addPending() {
    var msg = el('div', 'msg bot');
    msg.setAttribute('data-state', 'pending');
    msg.setAttribute('aria-busy', 'true');
    var row = el('div', 'thinking');
    var dots = el('span', 'dots');
    dots.setAttribute('aria-hidden', 'true');
    dots.appendChild(el('span'));
    dots.appendChild(el('span'));
    dots.appendChild(el('span'));
    row.appendChild(dots);
    row.appendChild(setI18n(el('span', 'thinking-text'), 'thinking'));
    msg.appendChild(row);
    log.appendChild(msg);
    return msg;
  }

  function settle(msg, state) {
    while (msg.firstChild) msg.removeChild(msg.firstChild);
    msg.setAttribute('data-state', state);
    msg.setAttribute('aria-busy', 'false');
  }

  function alternativesBlock(alts, labelKey, excludeId) {
    var list = (Array.isArray(alts) ? alts : []).filter(function (a) {
      return a && typeof a.question === 'string' && a.question.trim() && a.id !== excludeId;
    });
    if (!list.length) return null;
    var box = el('div', 'alts');
    var label = setI18n(el('p', 'alts-label'), labelKey);
    var ul = el('ul', 'alts-list');
    for (var i = 0; i < list.length; i++) {
      var li = el('li');
      var b = el('button', 'alt', list[i].question);
      b.type = 'button';
      if (list[i].id !== undefined && list[i].id !== null) b.setAttribute('data-id', String(list[i].id));
      b.addEventListener('click', onAskButton);
      li.appendChild(b);
      ul.appendChild(li);
    }
    box.appendChild(label);
    box.appendChild(ul);
    return box;
  }

  function confidenceBlock(value) {
    var num = Number(value);
    if (!isFinite(num)) return null;
    num = Math.max(0, Math.min(1, num));
    var pct = Math.round(num * 100);
    var level = num >= 0.7 ? 'high' : (num >= 0.4 ? 'medium' : 'low');
    var box = el('div', 'confidence');
    box.setAttribute('data-level', level);
    box.setAttribute('data-value', String(num));
    box.appendChild(setI18n(el('span', 'confidence-label'), 'confidence'));
    var bar = el('span', 'confidence-bar');
    bar.setAttribute('aria-hidden', 'true');
    // width via a class (5% steps): no inline styles under the CSP
    bar.appendChild(el('span', 'confidence-fill w' + (Math.round(pct / 5) * 5)));
    box.appendChild(bar);
    box.appendChild(el('span', 'confidence-value', pct + '%'));
    return box;
  }

  // The language of FAQ text is its own, not the question's: Chinese script → zh-CN.
  function textLang(text) {
    return /[\u3400-\u9fff]/.test(text || '') ? 'zh-CN' : 'en';
  }

  function renderAnswer(msg, data) {
    var match = data.match;
    settle(msg, 'answer');
    var cl = textLang(match.answer);

    var head = el('div', 'answer-head');
    if (match.section) {
      var sec = el('p', 'section', match.section);
      head.appendChild(sec);
    }
    var title = el('h2', 'match-question', match.question || '');
    title.setAttribute('lang', textLang(match.question));
    head.appendChild(title);
    msg.appendChild(head);

    var body = renderMarkdown(match.answer || '', match.commands);
    body.classList.add('answer-body');
    if (cl) body.setAttribute('lang', cl);
    msg.appendChild(body);

    var foot = el('div', 'answer-foot');
    var conf = confidenceBlock(match.confidence);
    if (conf) foot.appendChild(conf);
    if (foot.firstChild) msg.appendChild(foot);

    var alts = alternativesBlock(data.alternatives, 'didYouMean', match.id);
    if (alts) msg.appendChild(alts);
  }

  function renderNoAnswer(msg, data) {
    settle(msg, 'noanswer');
    var title = el('p', 'noanswer-title');
    var icon = el('span', 'noanswer-icon', '?');
    icon.setAttribute('aria-hidden', 'true');
    title.appendChild(icon);
    title.appendChild(setI18n(el('strong'), 'noAnswerTitle'));
    msg.appendChild(title);
    var alts = alternativesBlock(data.alternatives, 'nearest', null);
    if (alts) msg.appendChild(alts);
    else msg.appendChild(setI18n(el('p', 'noanswer-text'), 'rephrase'));
  }

  /**
   * err: { message?: string (server text, shown verbatim), key?: i18n key,
   *        args?: object, code?: string, retryAfter?: number }
   */
  function renderError(msg, err, question) {
    settle(msg, 'error');
    var p = el('p', 'error-text');
    var icon = el('span', 'error-icon', '!');
    icon.setAttribute('aria-hidden', 'true');
    p.appendChild(icon);
    p.appendChild(setI18n(el('strong', 'error-prefix'), 'errorPrefix'));
    if (err.message) p.appendChild(el('span', 'error-message', err.message));
    else p.appendChild(setI18n(el('span', 'error-message'), err.key, err.args));
    msg.appendChild(p);

    if (err.retryAfter !== undefined && err.retryAfter !== null) {
      msg.appendChild(setI18n(el('p', 'error-detail'), 'retryAfter', { s: err.retryAfter }));
    }
    if (err.code) {
      var code = el('p', 'error-code');
      code.appendChild(el('code', null, err.code));
      msg.appendChild(code);
    }
    var retry = el('button', 'retry');
    retry.type = 'button';
    setI18n(retry, 'retry');
    retry.addEventListener('click', function () { ask(question, false); });
    msg.appendChild(retry);
  }

  function parseRetryAfter(value) {
    if (!value) return null;
    var secs = parseInt(value, 10);
    if (/^\s*\d+\s*$/.test(value) && isFinite(secs)) return secs;
    var date = Date.parse(value);
    if (!isNaN(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
    return null;
  }

  function setBusy(busy) {
    inFlight = busy;
    sendBtn.disabled = busy;
    sendBtn.setAttribute('aria-disabled', busy ? 'true' : 'false');
    form.setAttribute('aria-busy', busy ? 'true' : 'false');
    document.body.classList.toggle('is-busy', busy);
  }

  function focusInput(fromPointerButton) {
    // On touch devices, don't pop up the keyboard over the answer after a tap
    // on a suggestion button; everywhere else keep the focus in the input.
    if (fromPointerButton && window.matchMedia && window.matchMedia('(pointer: coarse)').matches) return;
    try { input.focus({ preventScroll: true }); } catch (e) { input.focus(); }
  }

  function ask(rawQuestion, fromPointerButton) {
    var question = String(rawQuestion || '').trim();
    if (!question || inFlight) return false;

    emptyState.hidden = true;
    var userMsg = addUserMessage(question);
    var pending = addPending();
    scrollToMessage(pending);
    setBusy(true);
    focusInput(fromPointerButton);

    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS) : null;
    var timedOut = false;
    if (controller) controller.signal.addEventListener('abort', function () { timedOut = true; });

    fetch('/api/ask', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify({ question: question, top_k: 3 }),
      signal: controller ? controller.signal : undefined,
      credentials: 'same-origin',
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (body) {
        var data = null;
        try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
        return { res: res, data: data };
      });
    }).then(null, function () {
      // fetch rejected or the body could not be read: network failure / timeout
      return { failed: true };
    }).then(function (r) {
      if (r.failed) {
        renderError(pending, { key: timedOut ? 'timeoutError' : 'networkError' }, question);
        return;
      }
      var res = r.res;
      var data = r.data;
      if (!res.ok) {
        var e = (data && data.error && typeof data.error === 'object') ? data.error : {};
        renderError(pending, {
          message: typeof e.message === 'string' && e.message.trim() ? e.message : null,
          key: 'badResponse',
          args: { status: res.status },
          code: typeof e.code === 'string' ? e.code : null,
          retryAfter: res.status === 429 ? parseRetryAfter(res.headers.get('Retry-After')) : null
        }, question);
        return;
      }
      if (!data || typeof data !== 'object') {
        renderError(pending, { key: 'badResponse', args: { status: res.status } }, question);
        return;
      }
      var cl = contentLang(data.language);
      if (cl) userMsg.setAttribute('lang', cl);
      if (data.match && typeof data.match === 'object') renderAnswer(pending, data);
      else renderNoAnswer(pending, data);
    }).then(null, function (err) {
      // a bug while rendering: never leave the bubble pending
      if (typeof console !== 'undefined') console.error(err);
      renderError(pending, { key: 'unexpected' }, question);
    }).then(function () {
      if (timer) clearTimeout(timer);
      setBusy(false);
      revealAnswer(userMsg, pending);
      focusInput(fromPointerButton);
    });
    return true;
  }

  function onAskButton(ev) {
    var btn = ev.currentTarget;
    // detail === 0 means keyboard activation
    ask(btn.textContent, ev.detail > 0);
  }

  function submitInput() {
    if (inFlight) return;
    var q = input.value;
    if (!q.trim()) { input.focus(); return; }
    if (ask(q, false)) input.value = '';
  }

  function init() {
    log = document.getElementById('log');
    input = document.getElementById('question');
    sendBtn = document.getElementById('send');
    form = document.getElementById('composer');
    emptyState = document.getElementById('empty');
    scroller = document.getElementById('scroller');
    statusEl = document.getElementById('status');

    applyLang();

    document.getElementById('lang-switch').addEventListener('click', toggleLang);

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submitInput();
    });

    input.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Enter' || ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      // don't send while an IME (Chinese input) is composing
      if (ev.isComposing || ev.keyCode === 229) return;
      ev.preventDefault();
      submitInput();
    });

    // browsers without `field-sizing: content` grow the textarea by its line count
    var autoSize = !(window.CSS && CSS.supports && CSS.supports('field-sizing', 'content'));
    if (autoSize) {
      var resize = function () {
        input.rows = Math.max(1, Math.min(6, input.value.split('\n').length));
      };
      input.addEventListener('input', resize);
      form.addEventListener('submit', function () { setTimeout(resize, 0); });
    }

    var chips = document.querySelectorAll('.chip');
    for (var i = 0; i < chips.length; i++) chips[i].addEventListener('click', onAskButton);

    input.focus();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
