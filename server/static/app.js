/*
 * OpenKruise FAQ chat page.
 *
 * Plain JS, no dependencies, no network access other than POST /api/ask and
 * POST /api/feedback (👍/👎 under each answer; both say X-QA-Surface: page).
 * Every piece of data (the user's text, FAQ content, server messages) is put
 * into the DOM with createElement/textContent only; nothing is ever parsed as
 * HTML. Answers arrive as parts: commands, and text as the server's syntax
 * tree (markdown-it-py), which a short walker turns into DOM nodes.
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
      retryAfter: 'Try again in {s} s.',
      translated: 'Translated from the Chinese FAQ.',
      originalNote: 'The original entry of the Chinese FAQ.',
      showOriginal: 'Show the original (Chinese)',
      showTranslation: 'Show the English translation',
      feedbackQuestion: 'Was this helpful?',
      helpful: 'Helpful',
      notHelpful: 'Not helpful',
      commentLabel: 'What was missing or wrong? (optional)',
      commentPlaceholder: 'Tell us what you were looking for…',
      commentSend: 'Send',
      commentSkip: 'Skip',
      feedbackThanks: 'Thanks for your feedback!',
      feedbackLater: 'The feedback cannot be saved right now; try again later.',
      feedbackFailed: 'The feedback could not be sent (HTTP {status}).'
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
      retryAfter: '请在 {s} 秒后重试。',
      translated: '译自中文 FAQ。',
      originalNote: '中文 FAQ 原文。',
      showOriginal: '查看中文原文',
      showTranslation: '查看英文译文',
      feedbackQuestion: '这个回答有帮助吗？',
      helpful: '有帮助',
      notHelpful: '没帮助',
      commentLabel: '缺了什么或哪里不对？（可选）',
      commentPlaceholder: '告诉我们你想找的内容…',
      commentSend: '发送',
      commentSkip: '跳过',
      feedbackThanks: '谢谢你的反馈！',
      feedbackLater: '暂时无法保存反馈，请稍后再试。',
      feedbackFailed: '反馈发送失败（HTTP {status}）。'
    }
  };

  var LANG_KEY = 'okfaq.lang';
  var REQUEST_TIMEOUT_MS = 30000;
  var COPY_FEEDBACK_MS = 2000;
  var SURFACE = { 'X-QA-Surface': 'page' }; // the server records where a question came from
  var ANSWER_ID = /^[0-9a-f]{32}$/;
  var MAX_COMMENT = 2000;

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

  /** Puts the interface language on the page: <html lang>, every data-i18n text and attribute. */
  function applyLang() {
    document.documentElement.setAttribute('lang', lang === 'zh' ? 'zh-CN' : 'en');
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (n) {
      var args = null;
      try { args = JSON.parse(n.getAttribute('data-i18n-args') || 'null'); } catch (e) { args = null; }
      n.textContent = t(n.getAttribute('data-i18n'), args);
    });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-attr]'), function (n) {
      n.getAttribute('data-i18n-attr').split(',').forEach(function (spec) {
        var pair = spec.split(':');
        if (pair.length === 2) n.setAttribute(pair[0].trim(), t(pair[1].trim()));
      });
    });
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

  /** A new element; its text (if any) is set with textContent, its attributes with setAttribute. */
  function el(tag, className, text, attrs) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (var name in attrs || {}) node.setAttribute(name, attrs[name]);
    return node;
  }

  /** The lang attribute for the server's language of a question ('mixed' has none). */
  function contentLang(code) {
    return code === 'zh' ? 'zh-CN' : (code === 'en' ? 'en' : '');
  }

  // ---------------------------------------------------------------------------
  // Answer parts: text arrives as the server's syntax tree (markdown-it-py's
  // reading, the project's only one), walked into DOM nodes; commands arrive
  // as code. No markdown is parsed here.
  // ---------------------------------------------------------------------------

  var TAGS = {
    paragraph: 'p', bullet_list: 'ul', ordered_list: 'ol', list_item: 'li', blockquote: 'blockquote', hr: 'hr',
    thead: 'thead', tbody: 'tbody', tr: 'tr', th: 'th', td: 'td',
    strong: 'strong', em: 'em', s: 's', hardbreak: 'br'
  };
  var CJK = /[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]/;

  /** The link target if it is http(s) or mailto (all the server sends; checked again here). */
  function safeHref(href) {
    var s = typeof href === 'string' ? href.trim() : '';
    return /^(https?:\/\/|mailto:)/i.test(s) && !/[\u0000-\u0020\u007f]/.test(s) ? s : null;
  }

  function plainText(node) {
    if (!node || typeof node.text === 'string') return node ? node.text : '';
    return Array.isArray(node.children) ? node.children.map(plainText).join('') : '';
  }

  function appendNodes(parent, nodes) {
    for (var i = 0; Array.isArray(nodes) && i < nodes.length; i++) {
      parent.appendChild(renderNode(nodes[i] || {}, nodes[i - 1], nodes[i + 1]));
    }
    return parent;
  }

  /** One tree node → one DOM node; text only ever goes in as text (textContent, text nodes). */
  function renderNode(node, prev, next) {
    var type = node.type;
    var out;
    if (type === 'text') return document.createTextNode(String(node.text || ''));
    if (type === 'code') return el('code', null, node.text || '');
    if (type === 'code_block') return commandBlock(node.text || '', '');
    if (type === 'softbreak') { // a wrapped line: a space between words, none between CJK characters
      var cjk = CJK.test(plainText(prev).slice(-1)) && CJK.test(plainText(next).charAt(0));
      return document.createTextNode(cjk ? '' : ' ');
    }
    if (type === 'heading') { // the matched question is the h2: the answer's headings start at h3
      out = el('h' + Math.min(6, Math.max(1, Number(node.level) || 1) + 2), 'md-h');
    } else if (type === 'link' && safeHref(node.href)) {
      out = el('a', null, null, { href: safeHref(node.href), rel: 'noopener noreferrer', target: '_blank' });
    } else if (type === 'table') { // in a box that scrolls sideways by itself on a phone
      return el('div', 'md-table').appendChild(appendNodes(el('table'), node.children)).parentNode;
    } else if (TAGS.hasOwnProperty(type)) {
      out = el(TAGS[type]);
      if (type === 'ordered_list' && typeof node.start === 'number') out.setAttribute('start', String(node.start));
    } else if (!Array.isArray(node.children) && typeof node.text === 'string') {
      return document.createTextNode(node.text); // an unknown leaf: its text
    } else {
      out = document.createDocumentFragment(); // an unknown node, or a link to refuse: its children
    }
    return appendNodes(out, node.children);
  }

  /** The answer's parts in order: text trees, and commands as copyable blocks. */
  function renderParts(parts) {
    var root = el('div', 'md');
    (Array.isArray(parts) ? parts : []).forEach(function (part) {
      if (part && part.type === 'command') root.appendChild(commandBlock(part.code, part.language));
      else if (part && Array.isArray(part.tree)) appendNodes(root, part.tree);
      else if (part && typeof part.markdown === 'string') root.appendChild(el('p', null, part.markdown));
    });
    return root;
  }

  // --- code blocks with copy button -----------------------------------------

  function commandBlock(code, language) {
    var text = String(code === undefined || code === null ? '' : code);
    var name = String(language || '').trim();
    var named = name && name !== 'text'; // 'text': the fence named no language
    var wrap = el('div', 'command', null, name ? { 'data-language': name } : null);
    var head = wrap.appendChild(el('div', 'command-head'));
    head.appendChild(named ? el('span', 'command-lang', name) : setI18n(el('span', 'command-lang'), 'code'));
    var btn = head.appendChild(setI18n(el('button', 'copy', null, { type: 'button' }), 'copy'));
    // tabindex: a region that scrolls sideways must be reachable from the keyboard
    var pre = wrap.appendChild(el('pre', null, null, { tabindex: '0' }));
    if (named) pre.setAttribute('aria-label', name);
    pre.appendChild(el('code', name ? 'language-' + name.replace(/[^\w+#.-]/g, '') : null, text));

    var resetTimer = null;
    btn.addEventListener('click', function () {
      copyText(text).then(function (ok) {
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
    // the clipboard API needs a secure context; plain http on an intranet host gets this
    var active = document.activeElement;
    var ta = document.body.appendChild(el('textarea', 'clipboard-helper', null,
                                          { readonly: '', 'aria-hidden': 'true', tabindex: '-1' }));
    ta.value = text;
    var ok = false;
    try {
      ta.select();
      ta.setSelectionRange(0, text.length);
      ok = document.execCommand('copy');
    } catch (e) { /* not allowed */ }
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
    return log.appendChild(el('div', 'msg user', text));
  }

  function addPending() {
    var msg = el('div', 'msg bot', null, { 'data-state': 'pending', 'aria-busy': 'true' });
    var row = msg.appendChild(el('div', 'thinking'));
    var dots = row.appendChild(el('span', 'dots', null, { 'aria-hidden': 'true' }));
    for (var i = 0; i < 3; i++) dots.appendChild(el('span'));
    row.appendChild(setI18n(el('span', 'thinking-text'), 'thinking'));
    return log.appendChild(msg);
  }

  function settle(msg, state) {
    while (msg.firstChild) msg.removeChild(msg.firstChild);
    msg.setAttribute('data-state', state);
    msg.setAttribute('aria-busy', 'false');
  }

  function alternativesBlock(alts, labelKey, excludeId, answerId) {
    var list = (Array.isArray(alts) ? alts : []).filter(function (a) {
      return a && typeof a.question === 'string' && a.question.trim() && a.id !== excludeId;
    });
    if (!list.length) return null;
    var box = el('div', 'alts');
    box.appendChild(setI18n(el('p', 'alts-label'), labelKey));
    var ul = box.appendChild(el('ul', 'alts-list'));
    list.forEach(function (a) {
      // in the asker's language when a translation is kept: a click then asks it in that language too
      var label = typeof a.translated_question === 'string' && a.translated_question.trim() ? a.translated_question : a.question;
      var b = el('button', 'alt', label, { type: 'button', lang: textLang(label) });
      if (a.id !== undefined && a.id !== null) b.setAttribute('data-id', String(a.id));
      if (ANSWER_ID.test(String(answerId || ''))) b.setAttribute('data-after', String(answerId));
      b.addEventListener('click', onAskButton);
      ul.appendChild(el('li')).appendChild(b);
    });
    return box;
  }

  function confidenceBlock(value) {
    var num = Number(value);
    if (!isFinite(num)) return null;
    num = Math.max(0, Math.min(1, num));
    var pct = Math.round(num * 100);
    var level = num >= 0.7 ? 'high' : (num >= 0.4 ? 'medium' : 'low');
    var box = el('div', 'confidence', null, { 'data-level': level, 'data-value': String(num) });
    box.appendChild(setI18n(el('span', 'confidence-label'), 'confidence'));
    var bar = box.appendChild(el('span', 'confidence-bar', null, { 'aria-hidden': 'true' }));
    // width via a class (5% steps): no inline styles under the CSP
    bar.appendChild(el('span', 'confidence-fill w' + (Math.round(pct / 5) * 5)));
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
    var translation = match.translation && Array.isArray(match.translation.answer) ? match.translation : null;
    var original = entryView(match.section, match.question, match.answer);
    if (!translation) {
      msg.appendChild(original);
    } else {
      // An English asker reads the maintained translation first; the original is one click away.
      var shown = msg.appendChild(entryView(match.section, translation.question, translation.answer));
      original.hidden = true;
      msg.appendChild(original);
      var note = msg.appendChild(el('p', 'translation-note'));
      var noteText = note.appendChild(setI18n(el('span'), 'translated'));
      var toggle = note.appendChild(setI18n(el('button', 'link-button', null, { type: 'button', 'aria-pressed': 'false' }),
                                            'showOriginal'));
      toggle.addEventListener('click', function () {
        var showOriginal = original.hidden;
        original.hidden = !showOriginal;
        shown.hidden = showOriginal;
        toggle.setAttribute('aria-pressed', String(showOriginal));
        setI18n(noteText, showOriginal ? 'originalNote' : 'translated');
        setI18n(toggle, showOriginal ? 'showTranslation' : 'showOriginal');
      });
    }

    var conf = confidenceBlock(match.confidence);
    if (conf) msg.appendChild(el('div', 'answer-foot')).appendChild(conf);

    var alts = alternativesBlock(data.alternatives, 'didYouMean', match.id, data.answer_id);
    if (alts) msg.appendChild(alts);
    var fb = feedbackBlock(data.answer_id);
    if (fb) msg.appendChild(fb);
  }

  /** One entry's section, question and answer parts (the original or its translation). */
  function entryView(section, question, parts) {
    var view = el('div', 'entry-view');
    var head = view.appendChild(el('div', 'answer-head'));
    if (section) head.appendChild(el('p', 'section', section, { lang: textLang(section) }));
    head.appendChild(el('h2', 'match-question', question || '', { lang: textLang(question) }));
    var body = view.appendChild(renderParts(parts));
    body.classList.add('answer-body');
    body.setAttribute('lang', textLang([].concat(parts).map(function (p) { return p && p.markdown; }).join()));
    return view;
  }

  function renderNoAnswer(msg, data) {
    settle(msg, 'noanswer');
    var title = msg.appendChild(el('p', 'noanswer-title'));
    title.appendChild(el('span', 'noanswer-icon', '?', { 'aria-hidden': 'true' }));
    title.appendChild(setI18n(el('strong'), 'noAnswerTitle'));
    var alts = alternativesBlock(data.alternatives, 'nearest', null, data.answer_id);
    if (alts) msg.appendChild(alts);
    else msg.appendChild(setI18n(el('p', 'noanswer-text'), 'rephrase'));
    var fb = feedbackBlock(data.answer_id);
    if (fb) msg.appendChild(fb);
  }

  // ---------------------------------------------------------------------------
  // Feedback: 👍 / 👎 under an answer (👎 then offers an optional comment)
  // ---------------------------------------------------------------------------

  /** POST /api/feedback; resolves { ok, status, message?, retryAfter? } (never rejects). */
  function sendFeedback(answerId, helpful, comment) {
    var body = { answer_id: answerId, helpful: helpful };
    if (comment) body.comment = comment;
    return fetch('/api/feedback', {
      method: 'POST',
      headers: Object.assign({ 'Content-Type': 'application/json', 'Accept': 'application/json' }, SURFACE),
      body: JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        var e = (data && data.error && typeof data.error === 'object') ? data.error : {};
        return {
          ok: res.ok, status: res.status,
          message: typeof e.message === 'string' && e.message.trim() ? e.message : null,
          retryAfter: res.status === 429 ? parseRetryAfter(res.headers.get('Retry-After')) : null
        };
      });
    }).then(null, function () { return { ok: false, status: 0 }; });
  }

  function feedbackBlock(answerId) {
    if (!ANSWER_ID.test(String(answerId || ''))) return null;
    var box = el('div', 'feedback', null, { 'data-answer-id': answerId });
    var row = box.appendChild(el('div', 'feedback-row'));
    var label = row.appendChild(setI18n(el('span', 'feedback-label', null, { id: 'fb-' + answerId }), 'feedbackQuestion'));
    var group = row.appendChild(el('div', 'feedback-buttons', null, { role: 'group', 'aria-labelledby': label.id }));
    var yes = group.appendChild(feedbackButton('👍', 'helpful', 'yes'));
    var no = group.appendChild(feedbackButton('👎', 'notHelpful', 'no'));
    var status = box.appendChild(el('p', 'feedback-status', null, { role: 'status', 'aria-live': 'polite' }));
    var commentForm = null;

    function setButtons(disabled) {
      yes.disabled = disabled;
      no.disabled = disabled;
    }

    function press(btn) {
      yes.setAttribute('aria-pressed', String(btn === yes));
      no.setAttribute('aria-pressed', String(btn === no));
    }

    function showStatus(key, args, message, kind) {
      status.setAttribute('data-kind', kind);
      if (message) { status.removeAttribute('data-i18n'); status.textContent = message; }
      else setI18n(status, key, args);
    }

    function thank() {
      if (commentForm) { box.removeChild(commentForm); commentForm = null; }
      setButtons(true);
      box.setAttribute('data-state', 'done');
      showStatus('feedbackThanks', null, null, 'ok');
    }

    /** Handles a failed POST; returns false when the feedback row is gone (404). */
    function failed(r) {
      if (r.status === 404) { // unknown answer or recording off: no feedback here
        box.hidden = true;
        return false;
      }
      if (r.status === 0) showStatus('networkError', null, null, 'error');
      else if (r.status === 503) showStatus('feedbackLater', null, null, 'error');
      else if (r.status === 429 && r.retryAfter !== null && r.retryAfter !== undefined) {
        showStatus('retryAfter', { s: r.retryAfter }, null, 'error');
      } else showStatus('feedbackFailed', { status: r.status }, r.message, 'error');
      return true;
    }

    function vote(helpful) {
      var btn = helpful ? yes : no;
      setButtons(true);
      press(btn);
      status.textContent = '';
      status.removeAttribute('data-i18n');
      sendFeedback(answerId, helpful, null).then(function (r) {
        if (!r.ok) {
          press(null);
          setButtons(false);
          failed(r);
          return;
        }
        if (helpful) thank();
        else openComment();
      });
    }

    function openComment() {
      commentForm = box.appendChild(el('form', 'feedback-comment', null, { novalidate: '' }));
      var id = 'fbc-' + answerId;
      commentForm.appendChild(setI18n(el('label', 'feedback-comment-label', null, { 'for': id }), 'commentLabel'));
      var area = commentForm.appendChild(el('textarea', 'feedback-comment-text', null, {
        id: id, rows: '2', maxlength: String(MAX_COMMENT), 'data-i18n-attr': 'placeholder:commentPlaceholder',
        placeholder: t('commentPlaceholder')
      }));
      var actions = commentForm.appendChild(el('div', 'feedback-comment-actions'));
      var send = actions.appendChild(setI18n(el('button', 'feedback-send', null, { type: 'submit' }), 'commentSend'));
      var skip = actions.appendChild(setI18n(el('button', 'feedback-skip link-button', null, { type: 'button' }),
                                             'commentSkip'));
      skip.addEventListener('click', thank);
      commentForm.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var comment = area.value.trim().slice(0, MAX_COMMENT);
        if (!comment) { thank(); return; }
        send.disabled = true;
        skip.disabled = true;
        sendFeedback(answerId, false, comment).then(function (r) {
          send.disabled = false;
          skip.disabled = false;
          if (r.ok) thank();
          else if (failed(r)) area.focus();
        });
      });
      try { area.focus({ preventScroll: true }); } catch (e) { area.focus(); }
      commentForm.scrollIntoView({ block: 'nearest', behavior: prefersReducedMotion() ? 'auto' : 'smooth' });
    }

    yes.addEventListener('click', function () { vote(true); });
    no.addEventListener('click', function () { vote(false); });
    return box;
  }

  /** A 👍/👎 toggle; its name is the visible word (the emoji is decoration, and may lack a font). */
  function feedbackButton(emoji, labelKey, kind) {
    var b = el('button', 'feedback-button', null, { type: 'button', 'aria-pressed': 'false', 'data-vote': kind });
    b.appendChild(el('span', 'feedback-emoji', emoji, { 'aria-hidden': 'true' }));
    b.appendChild(setI18n(el('span', 'feedback-word'), labelKey));
    return b;
  }

  /**
   * err: { message?: string (server text, shown verbatim), key?: i18n key,
   *        args?: object, code?: string, retryAfter?: number }
   */
  function renderError(msg, err, question) {
    settle(msg, 'error');
    var p = msg.appendChild(el('p', 'error-text'));
    p.appendChild(el('span', 'error-icon', '!', { 'aria-hidden': 'true' }));
    p.appendChild(setI18n(el('strong', 'error-prefix'), 'errorPrefix'));
    if (err.message) p.appendChild(el('span', 'error-message', err.message));
    else p.appendChild(setI18n(el('span', 'error-message'), err.key, err.args));

    if (err.retryAfter !== undefined && err.retryAfter !== null) {
      msg.appendChild(setI18n(el('p', 'error-detail'), 'retryAfter', { s: err.retryAfter }));
    }
    if (err.code) msg.appendChild(el('p', 'error-code')).appendChild(el('code', null, err.code));
    var retry = msg.appendChild(setI18n(el('button', 'retry', null, { type: 'button' }), 'retry'));
    retry.addEventListener('click', function () { ask(question, false, null); });
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

  function ask(rawQuestion, fromPointerButton, after) {
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
      headers: Object.assign({ 'Content-Type': 'application/json', 'Accept': 'application/json' }, SURFACE),
      body: JSON.stringify(after ? { question: question, top_k: 3, tree: true, after: after }
                                 : { question: question, top_k: 3, tree: true }),
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
      return { failed: true }; // fetch rejected or the body could not be read: network failure / timeout
    }).then(function (r) {
      if (r.failed) {
        renderError(pending, { key: timedOut ? 'timeoutError' : 'networkError' }, question);
        return;
      }
      var res = r.res, data = r.data;
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
    var earlier = btn.getAttribute('data-after');
    var entry = btn.getAttribute('data-id');
    // a click on an alternative says which answer it followed: the strongest sign of what was meant
    var after = earlier && entry ? { answer_id: earlier, entry_id: entry } : null;
    ask(btn.textContent, ev.detail > 0, after);
  }

  function submitInput() {
    if (inFlight) return;
    var q = input.value;
    if (!q.trim()) { input.focus(); return; }
    if (ask(q, false, null)) input.value = '';
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

    form.addEventListener('submit', function (ev) { ev.preventDefault(); submitInput(); });

    input.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Enter' || ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      // don't send while an IME (Chinese input) is composing
      if (ev.isComposing || ev.keyCode === 229) return;
      ev.preventDefault();
      submitInput();
    });

    // browsers without `field-sizing: content` grow the textarea by its line count
    if (!(window.CSS && CSS.supports && CSS.supports('field-sizing', 'content'))) {
      var resize = function () { input.rows = Math.max(1, Math.min(6, input.value.split('\n').length)); };
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
