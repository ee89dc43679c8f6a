/*
 * ViT Feature Atlas: the little interactivity the static pages need.
 * - the header search (Material's box, every page): "layer/unit" (or "key/depth/unit") →
 *   feature page; other text →
 *   the units a word labels (word index, with thumbnails) and units by class name, above
 *   Material's results from the handbook
 * - search-by-word page (<model>/words/): every unit a word labels, ranked by score
 * - feature pages: the examples across the activation range, the similar units and the
 *   heatmap overlays, drawn from feature.json (its examples, similar units and quantized
 *   maps; models.json says which units have a page), legend, toggle,
 *   attribution-map toggle, the recipe's fields (from feature.json, when opened), keyboard
 *   shortcuts, the Copy BibTeX button (the recipe tabs need
 *   no script: radio inputs and labels)
 * - layer pages: the grid of every unit (units.json; only the tiles in view are in the
 *   document); filter it by unit number, label, top class, "only trusted" or recognisability;
 *   sort it by unit, times the best dataset example, z-rank, 2-AFC or foreground share; the
 *   map of the layer (map.json on a canvas: zoom, pan, thumbnails of the units in view once
 *   zoomed in, click → feature page)
 * Everything is fetched by relative URL; strings reach the DOM only through textContent.
 */
(function () {
  "use strict";

  var cache = {};
  function getJSON(url) {
    if (!cache[url]) {
      cache[url] = fetch(url).then(function (r) {
        if (!r.ok) throw new Error(r.status + " " + url);
        return r.json();
      });
    }
    return cache[url];
  }
  function join(base, path) {
    return (base || ".").replace(/\/+$/, "") + "/" + path;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---- layer/unit queries ------------------------------------------------------------- */
  var JUMP = /^\s*(?:([A-Za-z0-9][\w.\-]*)\s*\/\s*)?[Ll]?(\d+)\s*(?:[\/.:,]|\s)\s*[Uu]?(\d+)\s*\/?\s*$/;
  // a key, query or value channel as its URL names it: "key/3/17", "key 3 17", "model/key/3/17"
  var KIND_JUMP = /^\s*(?:([A-Za-z0-9][\w.\-]*)\s*\/\s*)?(query|key|value)\s*\/?\s*(\d+)\s*(?:[\/.:,]|\s)\s*[Uu]?(\d+)\s*\/?\s*$/i;

  function pickModel(index, slug) {
    var models = index.models || [];
    for (var i = 0; i < models.length; i++) if (models[i].slug === slug) return models[i];
    return models[0];
  }
  function isJump(q) { return JUMP.test(q) || KIND_JUMP.test(q); }
  function findLayer(model, layer) {
    for (var i = 0; i < model.layers.length; i++) if (model.layers[i].layer === layer) return model.layers[i];
    return null;
  }
  function findKind(model, kind, depth) {
    for (var i = 0; i < model.layers.length; i++) {
      var l = model.layers[i];
      if (l.kind === kind && l.depth === depth) return l;
    }
    return null;
  }
  // A layer's page, from the site root: models.json's "path" (pipeline/site/urls.py makes it:
  // <slug>/<layer>/ for FFN units, <slug>/<kind>/<depth>/ for key, query and value channels);
  // a models.json without paths (format 7 and before) had every layer at <slug>/<layer>/.
  function layerPath(model, layer) {
    var info = typeof layer === "number" ? findLayer(model, layer) : layer;
    if (info && info.path) return info.path;
    return model.slug + "/" + (info ? info.layer : layer) + "/";
  }
  function unitPath(model, layer, unit) { return layerPath(model, layer) + unit + "/"; }
  // A layer and its units by name: models.json's "name" and "unit_name" (pipeline/site/urls.py
  // layer_name: "layer 3 · unit {unit}", "key channel {unit} of block 3"); an older
  // models.json has none.
  function layerName(info) {
    if (info.name) return info.name;
    return info.kind && info.kind !== "ffn" ? info.kind + " " + info.depth + " (layer " + info.layer + ")"
      : "layer " + info.layer;
  }
  function unitName(info, unit) {
    return info.unit_name ? info.unit_name.replace("{unit}", unit) : layerName(info) + " · unit " + unit;
  }
  // A unit in a few characters, for lists of hits: "L9 · U3" for an FFN unit of layer 9,
  // "K3 · U17" for key channel 17 of block 3 (Q, V: query, value); unitName says it in full.
  function unitShort(model, layer, unit, sep) {
    var info = findLayer(model, layer);
    var head = info && info.kind && info.kind !== "ffn" ? info.kind.charAt(0).toUpperCase() + info.depth
      : "L" + layer;
    return head + (sep || " · ") + "U" + unit;
  }

  /* ---- words: the word index (models.json's "words": shards of {concept: entries}) ---- */
  // An entry is [layer, unit, score, rank, thumb]: rank 1 = the concept is the unit's label,
  // thumb = index into words.thumbs (-1: no visualization). Shards hold consecutive key
  // ranges (key = lower case, in JavaScript's string order); a concept may continue from one
  // shard into the next, its best entries first ("split": {concept: [offset, total]}).
  function hasOwn(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function wordKey(s) { return String(s).toLowerCase(); }

  function Words(base, model) {
    this.base = base;
    this.model = model;
    this.index = model.words;
  }
  // shard numbers whose range holds key (exact) or meets the prefix range [key, key + U+FFFF]
  Words.prototype.shardsFor = function (key, exact) {
    var out = [];
    this.index.shards.forEach(function (s, i) {
      if (exact ? s[1] <= key && key <= s[2] : s[1] <= key + "\uffff" && s[2] >= key) out.push(i);
    });
    return out;
  };
  Words.prototype.shard = function (i) {
    return getJSON(join(this.base, this.index.shards[i][0]));
  };
  // The words that start with q, the exact ones first, then by units: [{concept, total,
  // entries, seen: {shard: true}}] (entries: what the fetched shards hold, best first).
  Words.prototype.lookup = function (q, maxShards) {
    var self = this, key = wordKey(q.trim());
    var numbers = this.shardsFor(key, false).slice(0, maxShards || 3);
    return Promise.all(numbers.map(function (i) { return self.shard(i); })).then(function (shards) {
      var found = new Map();
      shards.forEach(function (shard, j) {
        Object.keys(shard.words).forEach(function (c) {
          if (wordKey(c).indexOf(key) !== 0) return;
          if (!found.has(c)) found.set(c, { concept: c, total: 0, entries: [], seen: {} });
          self.add(found.get(c), shard, numbers[j]);
        });
      });
      return Array.from(found.values()).sort(function (a, b) {
        var ea = wordKey(a.concept) === key, eb = wordKey(b.concept) === key;
        if (ea !== eb) return ea ? -1 : 1;
        return b.total - a.total || (a.concept < b.concept ? -1 : a.concept > b.concept ? 1 : 0);
      });
    });
  };
  Words.prototype.add = function (word, shard, number) {
    var c = word.concept, split = hasOwn(shard.split, c) ? shard.split[c] : null;
    word.seen[number] = true;
    word.total = split ? split[1] : shard.words[c].length;
    if ((split ? split[0] : 0) === word.entries.length) word.entries = word.entries.concat(shard.words[c]);
  };
  // Fetch the next shards that continue `word` until it has n entries (or all it has).
  Words.prototype.more = function (word, n) {
    var self = this;
    if (word.entries.length >= Math.min(n, word.total)) return Promise.resolve(word);
    var next = this.shardsFor(wordKey(word.concept), true).filter(function (i) { return !word.seen[i]; })[0];
    if (next === undefined) return Promise.resolve(word);
    return this.shard(next).then(function (shard) {
      if (hasOwn(shard.words, word.concept)) self.add(word, shard, next);
      else word.seen[next] = true;
      return self.more(word, n);
    });
  };
  Words.prototype.unitUrl = function (e) {
    return join(this.base, unitPath(this.model, e[0], e[1]));
  };
  Words.prototype.pageUrl = function (concept) {
    return join(this.base, this.index.page) + "?word=" + encodeURIComponent(concept);
  };
  // One result: the unit's visualization (or a placeholder), layer/unit, score and rank.
  Words.prototype.hit = function (e, px) {
    var a = el("a", "atlas-word-hit");
    a.href = this.unitUrl(e);
    var info = findLayer(this.model, e[0]);  // a key, query or value channel by kind and block
    var name = info && info.kind && info.kind !== "ffn" ? unitName(info, e[1]) : "layer " + e[0] + " unit " + e[1];
    a.title = name;
    var thumb = e[4] >= 0 ? this.index.thumbs[e[4]] : null;
    if (thumb) {
      var img = el("img");
      img.src = this.unitUrl(e) + thumb;
      img.alt = name;
      img.loading = "lazy";
      img.width = img.height = px;
      a.appendChild(img);
    } else {
      a.appendChild(el("span", "atlas-novis", "no image"));
    }
    a.appendChild(el("span", "atlas-word-hit-unit", unitShort(this.model, e[0], e[1])));
    a.appendChild(el("small", null, (e[2] === null ? "–" : String(e[2])) + (e[3] === 1 ? " · label" : " · #" + e[3])));
    return a;
  };

  function wordsFor(base, index, slug) {
    var model = pickModel(index, slug);
    return model && model.words ? new Words(base, model) : null;
  }

  /* ---- classes: the class index (models.json's "class_index": a head and shards) ------- */
  // The head holds the class names, each class's unit count and best units ("top", a flat
  // [layer, unit, ...]), and its shards as [url, first class, last class, units]; a shard
  // holds consecutive classes' units, best first ("units": {class: [...]}), a class that
  // does not fit continuing into the next ("split": {class: [offset, total]}).
  var CLASS_MORE = 32;  // units a class hit's "more" adds
  function Classes(base, model) {
    this.base = base;
    this.url = model.class_index;
  }
  Classes.prototype.load = function () {
    var self = this;
    return getJSON(join(this.base, this.url)).then(function (head) { self.head = head; return head; });
  };
  // up to n classes whose name contains q (case-insensitive), in class order
  Classes.prototype.find = function (q, n) {
    var needle = q.toLowerCase();
    return this.load().then(function (head) {
      var hits = [];
      for (var c = 0; c < head.classes.length && hits.length < n; c++) {
        if (String(head.classes[c]).toLowerCase().indexOf(needle) >= 0) hits.push(c);
      }
      return hits;
    });
  };
  // class c's first n units (a flat [layer, unit, ...]), from the shards that hold them
  Classes.prototype.units = function (c, n) {
    var self = this, key = String(c), out = [];
    var shards = this.head.shards.filter(function (s) { return s[1] <= c && c <= s[2]; });
    function next(i) {
      if (i >= shards.length || out.length >= 2 * n) return Promise.resolve(out);
      return getJSON(join(self.base, shards[i][0])).then(function (shard) {
        if (hasOwn(shard.units, key)) out = out.concat(shard.units[key]);
        return next(i + 1);
      });
    }
    return next(0);
  };
  function classesFor(base, model) {
    return model.class_index ? new Classes(base, model) : null;
  }

  /* ---- the header search (Material's box): units besides the documentation ------------ */
  // Material searches the handbook (its lunr index); above its results this adds, from the
  // static indexes: "layer/unit" (3/17, L3 U17, model/3/17) → that feature page; a word → the
  // units it labels (word index shards, best first, with thumbnails); a class name → the
  // units that rank it among their top classes. Enter on a layer/unit goes to its page.
  function siteBase() {
    var node = document.getElementById("__config");
    try { return JSON.parse(node.textContent).base || "."; } catch (e) { return "."; }
  }
  function meta(name) {
    var node = document.querySelector('meta[name="' + name + '"]');
    return node ? node.getAttribute("content") : null;
  }

  function setupHeaderSearch() {
    var input = document.querySelector(".md-search__input");
    var result = document.querySelector(".md-search-result");
    var dialog = document.querySelector(".md-search[role=dialog]");
    if (dialog && !dialog.hasAttribute("aria-label")) dialog.setAttribute("aria-label", "Search the atlas");
    if (!input || !result) return;
    var base = siteBase(), slug = meta("atlas-model");
    var hint = meta("atlas-search-hint");
    if (hint) {
      input.placeholder = hint;
      input.setAttribute("aria-label", "Search the atlas: " + hint.replace(/^Search:?\s*/, ""));
    }
    var box = el("div", "atlas-search");
    var msg = el("p", "atlas-search-msg");
    msg.setAttribute("aria-live", "polite");
    var list = el("ul", "atlas-search-results");
    box.appendChild(msg);
    box.appendChild(list);
    box.hidden = true;
    result.parentNode.insertBefore(box, result);
    var timer = null, asked = 0, target = null, last = null;
    var models = function () { return getJSON(join(base, "models.json")); };

    function say(text) { msg.textContent = text || ""; }
    function clear() { list.textContent = ""; say(""); box.hidden = true; target = null; }

    function resolve(q) {
      var k = KIND_JUMP.exec(q), m = k ? null : JUMP.exec(q);
      if (!k && !m) return Promise.resolve(null);
      var named = k ? k[1] : m[1];
      return models().then(function (index) {
        var model = pickModel(index, named || slug);
        if (named) {
          for (var i = 0; i < index.models.length; i++) if (index.models[i].slug === named) model = index.models[i];
        }
        if (!model) return { error: "This site holds no atlas." };
        var info, unit;
        if (k) {
          var kind = k[2].toLowerCase(), depth = parseInt(k[3], 10);
          unit = parseInt(k[4], 10);
          info = findKind(model, kind, depth);
          if (!info) return { error: "No " + kind + " channels of block " + depth + " in " + model.slug + "." };
        } else {
          var layer = parseInt(m[2], 10);
          unit = parseInt(m[3], 10);
          info = findLayer(model, layer);
          if (!info) return { error: "No layer " + layer + " in " + model.slug + "." };
        }
        var ok = info.pages ? info.pages.indexOf(unit) >= 0 : unit < info.units;
        var named = layerName(info);
        if (!ok) return { error: named.charAt(0).toUpperCase() + named.slice(1) + " has no page for unit " + unit + " (" + info.units + " units)." };
        return { url: join(base, unitPath(model, info, unit)), model: model, layer: info.layer, name: unitName(info, unit), unit: unit };
      });
    }

    function searchWords(q) {
      return models().then(function (index) {
        var words = wordsFor(base, index, slug);
        if (!words) return { words: null, hits: [] };
        return words.lookup(q, 3).then(function (hits) { return { words: words, hits: hits }; });
      });
    }

    function searchClasses(q) {
      return models().then(function (index) {
        var model = pickModel(index, slug);
        var classes = model ? classesFor(base, model) : null;
        if (!classes) return { model: model, hits: [] };
        return classes.find(q, 8).then(function (hits) {
          return { model: model, hits: hits, classes: classes };
        });
      });
    }

    function showUnit(r) {
      var li = el("li", "atlas-search-unit");
      var a = el("a", null, r.model.slug + " · " + r.name);
      a.href = r.url;
      li.appendChild(a);
      li.appendChild(el("span", null, " – feature page (Enter)"));
      list.appendChild(li);
    }

    function showWords(res) {
      if (!res.hits.length) return;
      var w = res.hits[0], words = res.words;
      var li = el("li", "atlas-search-word");
      var head = el("div", "atlas-search-word-head");
      head.appendChild(el("b", null, w.concept));
      head.appendChild(el("span", null, " labels " + w.total + " unit" + (w.total === 1 ? "" : "s") + " "));
      var all = el("a", "atlas-search-word-all", "all on the word page ›");
      all.href = words.pageUrl(w.concept);
      head.appendChild(all);
      li.appendChild(head);
      var hits = el("div", "atlas-word-hits");
      w.entries.slice(0, 8).forEach(function (e) { hits.appendChild(words.hit(e, 48)); });
      li.appendChild(hits);
      list.appendChild(li);
      if (res.hits.length > 1) {
        var other = el("li", "atlas-search-words-other", "Other words: ");
        res.hits.slice(1, 9).forEach(function (o, i) {
          var a = el("a", null, o.concept);
          a.href = words.pageUrl(o.concept);
          if (i) other.appendChild(document.createTextNode(" · "));
          other.appendChild(a);
          other.appendChild(el("span", "atlas-search-count", " " + o.total));
        });
        list.appendChild(other);
      }
    }

    function classLink(res, units, i) {
      var a = el("a", null, unitShort(res.model, units[i], units[i + 1], "/"));
      a.href = join(base, unitPath(res.model, units[i], units[i + 1]));
      return a;
    }
    // a class hit: its best units (the index's head), and a button that fetches the shards
    // holding the rest, CLASS_MORE units at a time
    function showClasses(res) {
      res.hits.forEach(function (c) {
        var li = el("li", "atlas-search-class");
        li.appendChild(el("b", null, res.classes.head.classes[c]));
        var count = res.classes.head.counts[c];
        li.appendChild(el("span", null, " (class, " + count + " unit" + (count === 1 ? "" : "s") + ")"));
        if (!count) li.appendChild(el("span", null, " – no unit ranks it among its top classes"));
        var shown = res.classes.head.top[c] || [];
        var links = el("span", "atlas-search-class-units");
        for (var i = 0; i < shown.length; i += 2) {
          links.appendChild(document.createTextNode(" "));
          links.appendChild(classLink(res, shown, i));
        }
        li.appendChild(links);
        if (count > shown.length / 2) {
          var more = el("button", "atlas-search-more", "more");
          more.type = "button";
          more.addEventListener("click", function (ev) {
            ev.preventDefault();
            var have = links.querySelectorAll("a").length;
            more.disabled = true;
            res.classes.units(c, have + CLASS_MORE).then(function (units) {
              for (var j = 2 * have; j < units.length && j < 2 * (have + CLASS_MORE); j += 2) {
                links.appendChild(document.createTextNode(" "));
                links.appendChild(classLink(res, units, j));
              }
              more.disabled = false;
              if (links.querySelectorAll("a").length >= count) more.remove();
            }).catch(function () { more.textContent = "could not load"; });
          });
          li.appendChild(document.createTextNode(" "));
          li.appendChild(more);
        }
        list.appendChild(li);
      });
    }

    // everything the atlas holds for q; resolves once shown (null when overtaken)
    function search(q) {
      var mine = ++asked;
      var none = function () { return { hits: [] }; };
      var unit = resolve(q).catch(function () { return null; });
      var text = q.length < 2 || isJump(q) || /^\d+$/.test(q);
      return Promise.all([unit, text ? none() : searchWords(q).catch(none),
                          text ? none() : searchClasses(q).catch(none)]).then(function (r) {
        if (mine !== asked) return null;
        list.textContent = "";
        target = r[0] && r[0].url ? r[0].url : null;
        if (target) showUnit(r[0]);
        showWords(r[1]);
        showClasses(r[2]);
        var any = target || r[1].hits.length || r[2].hits.length;
        last = { q: q, words: r[1], classes: list.querySelector(".atlas-search-class-units a") };
        say(r[0] && r[0].error ? r[0].error : any ? "In the atlas:" : "No unit, word or class of the atlas matches.");
        box.hidden = false;
        return { unit: r[0], words: r[1], classes: r[2] };
      });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      var q = input.value.trim();
      if (!q) { asked++; clear(); return; }
      timer = setTimeout(function () { search(q); }, 120);
    });
    // Enter (before Material's handler picks a handbook result): a layer/unit → its page; a
    // word the atlas holds → its word page (every unit it labels); a class → its best unit
    function go(res) {
      if (!res) return false;
      if (res.words && res.words.hits.length) { window.location.href = res.words.words.pageUrl(res.words.hits[0].concept); return true; }
      if (res.classes) { window.location.href = res.classes.href; return true; }
      return false;
    }
    input.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter") return;
      var q = input.value.trim();
      if (isJump(q)) {
        ev.preventDefault();
        ev.stopImmediatePropagation();
        clearTimeout(timer);
        resolve(q).then(function (r) {
          if (r && r.url) window.location.href = r.url;
          else if (r && r.error) { box.hidden = false; say(r.error); }
        });
        return;
      }
      if (last && last.q === q && go(last)) { ev.preventDefault(); ev.stopImmediatePropagation(); }
    }, true);
    // for tests and scripts: the atlas's part of the results for q
    input.atlasSearch = search;
  }

  /* ---- search-by-word page --------------------------------------------------------------- */
  var WORD_PAGE = 48;  // results shown at first, and added by "Show more"
  function setupWords(form) {
    var base = form.getAttribute("data-base") || ".";
    var input = form.querySelector("input[name=word]");
    var msg = form.querySelector(".atlas-words-msg");
    var suggest = document.querySelector(".atlas-words-suggest");
    var results = document.querySelector(".atlas-words-results");
    var more = document.querySelector(".atlas-words-more");
    var timer = null, asked = 0, current = null, shown = 0, words = null;

    function say(text) { msg.textContent = text || ""; }
    function reset() {
      suggest.textContent = ""; results.textContent = ""; more.hidden = true; current = null; shown = 0;
    }
    function render(n) {
      var w = current;
      return words.more(w, n).then(function () {
        if (w !== current) return;
        w.entries.slice(shown, n).forEach(function (e) { results.appendChild(words.hit(e, 96)); });
        shown = Math.min(n, w.entries.length);
        more.hidden = shown >= w.total;
        say(w.total + " unit" + (w.total === 1 ? "" : "s") + " with “" + w.concept + "” among their top concepts, best score first" +
            (shown < w.total ? " (" + shown + " shown)" : "") + ".");
      });
    }
    function pick(w) {
      current = w; shown = 0; results.textContent = "";
      return render(WORD_PAGE);
    }
    function run(q, push) {
      var mine = ++asked;
      if (push && window.history && window.history.replaceState) {
        var url = new URL(window.location.href);
        if (q) url.searchParams.set("word", q); else url.searchParams.delete("word");
        try { window.history.replaceState(null, "", url.href); } catch (e) { /* file:// */ }
      }
      if (!q) { reset(); say(""); return Promise.resolve(); }
      return getJSON(join(base, "models.json")).then(function (index) {
        words = wordsFor(base, index, form.getAttribute("data-model"));
        if (!words) { reset(); say("This atlas has no labels."); return; }
        return words.lookup(q, 3).then(function (hits) {
          if (mine !== asked) return;
          reset();
          if (!hits.length) { say("No concept starts with “" + q + "”."); return; }
          hits.slice(0, 24).forEach(function (w, i) {
            var b = el("button", "atlas-words-choice", w.concept);
            b.type = "button";
            b.appendChild(el("small", null, " " + w.total));
            b.setAttribute("aria-pressed", i === 0 ? "true" : "false");
            b.addEventListener("click", function () {
              suggest.querySelectorAll("button").forEach(function (o) { o.setAttribute("aria-pressed", "false"); });
              b.setAttribute("aria-pressed", "true");
              pick(w);
            });
            suggest.appendChild(b);
          });
          return pick(hits[0]);
        });
      }).catch(function () { if (mine === asked) { reset(); say("The word index is unavailable."); } });
    }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault(); clearTimeout(timer); run(input.value.trim(), true);
    });
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { run(input.value.trim(), true); }, 150);
    });
    more.addEventListener("click", function () { if (current) render(shown + WORD_PAGE); });
    var q = new URLSearchParams(window.location.search).get("word");
    if (q) { input.value = q; run(q, false); }
  }

  /* ---- heatmaps ------------------------------------------------------------------------ */
  // An "inferno"-like colormap, interpolated between fixed stops (legend uses the same LUT).
  var STOPS = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
               [245, 125, 21], [250, 193, 39], [252, 255, 164]];
  var LUT = (function () {
    var lut = new Uint8ClampedArray(256 * 3);
    for (var v = 0; v < 256; v++) {
      var x = v / 255 * (STOPS.length - 1), i = Math.min(Math.floor(x), STOPS.length - 2), t = x - i;
      for (var ch = 0; ch < 3; ch++) lut[v * 3 + ch] = STOPS[i][ch] + (STOPS[i + 1][ch] - STOPS[i][ch]) * t;
    }
    return lut;
  })();

  function paint(canvas, bytes, rows, cols) {
    canvas.width = cols;
    canvas.height = rows;
    var ctx = canvas.getContext("2d");
    var img = ctx.createImageData(cols, rows);
    for (var p = 0; p < rows * cols; p++) {
      var v = bytes[p];
      img.data[p * 4] = LUT[v * 3];
      img.data[p * 4 + 1] = LUT[v * 3 + 1];
      img.data[p * 4 + 2] = LUT[v * 3 + 2];
      img.data[p * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  // Patch maps as pipeline/site/assets.py encode_maps writes them (feature.json's
  // form): {encoding: "uint8-base64" | "uint4-base64", shape: [k, rows, cols],
  // scale, offset (absent: 0), data}; a value is offset + scale * level. decodeLevels: the k
  // maps' levels scaled to 0-255 (the colormap's index; 4 bits: level * 17), row-major.
  function decodeLevels(enc) {
    var s = atob(enc.data), n = 1, out;
    for (var d = 0; d < enc.shape.length; d++) n *= enc.shape[d];
    out = new Uint8Array(n);
    if (enc.encoding === "uint8-base64") {
      for (var i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    } else if (enc.encoding === "uint4-base64") {  // high nibble first
      for (var p = 0; p < n; p++) {
        var byte = s.charCodeAt(p >> 1);
        out[p] = ((p & 1) ? byte & 15 : byte >> 4) * 17;
      }
    } else {
      throw new Error("unknown map encoding " + enc.encoding);
    }
    return out;
  }
  function decodeMaps(enc) {  // the values themselves (Float32Array, row-major)
    var levels = decodeLevels(enc), out = new Float32Array(levels.length);
    var step = enc.encoding === "uint4-base64" ? enc.scale / 17 : enc.scale;
    for (var i = 0; i < levels.length; i++) out[i] = (enc.offset || 0) + step * levels[i];
    return out;
  }
  window.atlasDecodeMaps = decodeMaps;

  // The overlays are drawn from feature.json beside the page (its "top" maps and its
  // quantile examples' maps), fetched when the heatmaps are first turned on: the page itself
  // holds only the figures (images, scores, ids), which read without script. Here each
  // example's image gets its box (.atlas-ex-img) and a canvas; a top example's map is its
  // place in .atlas-topk, a quantile example's is its place in its interval's row (the rows
  // run from the highest interval down; feature.json lists an interval's examples together,
  // in the order shown). Top and quantile overlays share one colour scale, lo = min(0, min)
  // and hi = max of the maps shown (as assets.heatmap_scale), so that they compare.
  var heatFigs = null, heatLoad = null;

  // A short number as the site writes it (pipeline.site.markup.num, Python's "{:.4g}").
  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2013";
    // a value exactly halfway between two 4-digit numbers rounds to the even one, as in
    // Python (JavaScript rounds it up): 0.015625 is 0.01562
    var tie = /^-?\d\.\d{2}([02468])50*e/.exec(v.toExponential(20));
    if (tie) v = Number(v.toExponential(20).replace(/^(-?\d\.\d{3})50*e/, "$1e"));
    var sci = v.toExponential(3), e = +sci.slice(sci.indexOf("e") + 1);
    if (e < -4 || e >= 4) {
      return sci.replace(/\.?0+e/, "e").replace(/e([+-])(\d)$/, "e$10$2");
    }
    var s = v.toPrecision(4);
    return s.indexOf(".") >= 0 ? s.replace(/\.?0+$/, "") : s;
  }
  window.atlasNum = num;

  // The examples across the activation range (.atlas-quantiles): one row per interval of
  // feature.json's quantiles, the highest first, each with the interval's first N examples
  // (data-shown; feature.json lists an interval's examples together, best first): image (or
  // an empty box where the example has no thumbnail), id as its alt text, score below.
  function drawQuantiles(section, rec) {
    var q = rec.quantiles, ex = q && q.examples, shown = +section.getAttribute("data-shown");
    if (!ex || !q.intervals.length) return;
    var note = section.querySelector(".atlas-q-note");
    for (var j = q.intervals.length - 1; j >= 0; j--) {
      var row = el("div", "atlas-q-row"), figs = el("div"), kept = 0;
      var label = el("span", null, num(q.intervals[j][0]) + " \u2013 " + num(q.intervals[j][1]));
      for (var n = 0; n < ex.interval.length; n++) {
        if (ex.interval[n] !== j) continue;
        if (kept++ >= shown) continue;
        var fig = el("figure"), src = ex.images ? ex.images.replace("{example}", ex.example[n])
          : (ex.image && ex.image[n]);
        if (src) {
          var img = el("img");
          img.src = src;
          img.loading = "lazy";
          img.alt = ex.id[n];
          fig.appendChild(img);
        } else {
          var box = fig.appendChild(el("div", "atlas-ex-img"));
          box.title = ex.id[n];
        }
        fig.appendChild(el("figcaption", null, num(ex.score[n])));
        figs.appendChild(fig);
      }
      label.title = kept + " kept";
      row.appendChild(label);
      row.appendChild(figs);
      section.appendChild(row);
    }
    if (note) note.hidden = true;
  }

  // The similar units (.atlas-similar): feature.json's "similar" in three groups (this layer,
  // the model's other layers, other models), each its best N (data-shown) by score. A unit is
  // a link where it has a page in this site (models.json's "pages"; another model's: its
  // "slug"), with its visualization where "thumb" names one; else its name as text.
  var SIMILAR_GROUPS = ["Same layer", "Other layers", "Other models"];
  function similarItem(e, g, own, index, base) {
    var other = null;
    if (g === 2) {
      (index.models || []).forEach(function (m) {
        if (m.slug === e.slug || (!other && !e.slug && m.name === e.model)) other = m;
      });
    }
    var model = g === 2 ? other : own, info = model ? findLayer(model, e.layer) : null;
    var href = null;
    if (g < 2 && info) {
      if (info.pages ? info.pages.indexOf(e.unit) >= 0 : e.unit < info.units) href = join(base, unitPath(own, info, e.unit));
    } else if (g === 2 && e.slug) {
      href = join(base, unitPath(other || { slug: e.slug, layers: [] }, info || e.layer, e.unit));
    }
    var kqv = info && info.kind && info.kind !== "ffn", prefix = g === 2 ? e.model + " \u00b7 " : "";
    var where = kqv ? (g === 0 ? "channel " + e.unit : prefix + unitName(info, e.unit))
      : (g === 0 ? "unit " + e.unit : prefix + "L" + e.layer + " \u00b7 unit " + e.unit);
    var item = href ? el("a") : el("span", "atlas-off");
    if (href) item.href = href;
    else item.title = "no page in this site";
    if (href && e.thumb !== null && e.thumb !== undefined) {
      var img = el("img");
      img.src = href + e.thumb;
      img.loading = "lazy";
      img.alt = "";
      item.appendChild(img);
    } else {
      item.appendChild(el("span", "atlas-novis"));
    }
    item.appendChild(el("span", null, where));
    item.appendChild(el("small", null, "r = " + String(Number(e.score.toPrecision(3)))));
    return item;
  }
  function drawSimilar(section, rec, index) {
    var sim = rec.similar, shown = +section.getAttribute("data-shown");
    if (!sim || !sim.unit || !sim.unit.length) return;
    var own = pickModel(index, meta("atlas-model")) || { slug: meta("atlas-model"), layers: [] };
    var base = siteBase(), groups = [[], [], []];
    sim.unit.forEach(function (unit, n) {
      var model = sim.model ? sim.model[n] : null, t = sim.thumb ? sim.thumb[n] : null;
      var e = { model: model, layer: sim.layer[n], unit: unit, score: sim.score[n],
                slug: sim.slug ? sim.slug[n] : null,
                thumb: t === null || t === undefined || !sim.thumbs ? null : sim.thumbs[t] };
      groups[model !== null && model !== rec.model ? 2 : e.layer === rec.layer ? 0 : 1].push(e);
    });
    groups.forEach(function (found, g) {
      if (!found.length) return;
      var head = el("h3", null, SIMILAR_GROUPS[g] + " ");
      head.appendChild(el("small", null, found.length <= shown ? String(found.length)
        : "best " + shown + " of " + found.length + " (all in feature.json)"));
      var list = el("div", "atlas-sim-list");
      list.setAttribute("data-group", String(g));
      found.sort(function (a, b) { return b.score - a.score; }).slice(0, shown).forEach(function (e) {
        list.appendChild(similarItem(e, g, own, index, base));
      });
      section.appendChild(head);
      section.appendChild(list);
    });
    var note = section.querySelector(".atlas-sim-note");
    if (note) note.hidden = true;
    section.setAttribute("data-drawn", "");
  }

  // The heatmaps' toggle and legend, above the top examples (hidden until there are maps).
  function heatControls() {
    var top = document.querySelector(".atlas-topk");
    if (!top) return null;
    var controls = el("div", "atlas-heat-controls");
    controls.hidden = true;
    var button = el("button", "atlas-heat-toggle", "Heatmaps off ");
    button.type = "button";
    button.setAttribute("aria-pressed", "false");
    button.appendChild(el("kbd", null, "m"));
    var legend = el("span", "atlas-legend"), bar = el("canvas", "atlas-legend-bar");
    legend.setAttribute("aria-label", "Heatmap colour scale");
    legend.hidden = true;
    bar.width = 160;
    bar.height = 12;
    legend.appendChild(el("span", "atlas-legend-lo"));
    legend.appendChild(bar);
    legend.appendChild(el("span", "atlas-legend-hi"));
    legend.appendChild(document.createTextNode(" activation per patch"));
    controls.appendChild(button);
    controls.appendChild(document.createTextNode(" "));
    controls.appendChild(legend);
    top.parentNode.insertBefore(controls, top);
    return controls;
  }

  function setupHeatmaps() {
    var controls = document.querySelector(".atlas-heat-controls") || heatControls();
    var figs = [], rows = document.querySelectorAll(".atlas-q-row");
    document.querySelectorAll(".atlas-topk > figure").forEach(function (f, i) {
      figs.push({ fig: f, set: "top", i: i });
    });
    rows.forEach(function (row, r) {
      row.querySelectorAll("figure").forEach(function (f, i) {
        figs.push({ fig: f, set: "quant", j: rows.length - 1 - r, i: i });
      });
    });
    if (!controls || !figs.length) return;
    figs.forEach(function (o) {
      var box = o.fig.querySelector(".atlas-ex-img"), img = o.fig.querySelector("img");
      if (!box) {
        box = el("div", "atlas-ex-img");
        o.fig.insertBefore(box, img);
        box.appendChild(img);
      }
      o.canvas = box.appendChild(el("canvas", "atlas-heat"));
    });
    heatFigs = figs;
    controls.hidden = false;
    controls.querySelector(".atlas-heat-toggle").addEventListener("click", toggleHeatmaps);
  }
  function loadHeatmaps() {
    var controls = document.querySelector(".atlas-heat-controls");
    if (heatLoad) return heatLoad;
    heatLoad = getJSON("feature.json").then(function (rec) {
      var quant = rec.quantiles && rec.quantiles.examples, start = {};
      var sets = { top: rec.top && rec.top.maps, quant: quant && quant.maps };
      if (quant) quant.interval.forEach(function (j, n) { if (!(j in start)) start[j] = n; });
      var values = {}, shown = [], lo = 0, hi = -Infinity;
      Object.keys(sets).forEach(function (name) { if (sets[name]) values[name] = decodeMaps(sets[name]); });
      heatFigs.forEach(function (o) {
        var enc = sets[o.set], n = o.set === "top" ? o.i : (start[o.j] === undefined ? -1 : start[o.j] + o.i);
        if (!enc || n < 0 || n >= enc.shape[0]) return;
        var size = enc.shape[1] * enc.shape[2], v = values[o.set].subarray(n * size, (n + 1) * size);
        for (var p = 0; p < size; p++) { lo = Math.min(lo, v[p]); hi = Math.max(hi, v[p]); }
        shown.push([o.canvas, v, enc.shape[1], enc.shape[2]]);
      });
      if (!(hi > lo)) hi = lo + 1;
      shown.forEach(function (s) {
        var levels = new Uint8Array(s[1].length);
        for (var p = 0; p < levels.length; p++) levels[p] = Math.round((s[1][p] - lo) / (hi - lo) * 255);
        paint(s[0], levels, s[2], s[3]);
      });
      var ramp = new Uint8Array(256);
      for (var v = 0; v < 256; v++) ramp[v] = v;
      paint(controls.querySelector(".atlas-legend-bar"), ramp, 1, 256);
      controls.querySelector(".atlas-legend-lo").textContent = String(Number(lo.toPrecision(4)));
      controls.querySelector(".atlas-legend-hi").textContent = String(Number(hi.toPrecision(4)));
      controls.querySelector(".atlas-legend").hidden = false;
      controls.setAttribute("data-heat", "ready");
    }, function () {  // a page opened from disk (file:// forbids the fetch), or no feature.json
      var button = controls.querySelector(".atlas-heat-toggle");
      document.querySelector(".atlas-feature").classList.add("atlas-heat-off");
      button.disabled = true;
      button.textContent = "Heatmaps unavailable (they need the site served over HTTP)";
      controls.setAttribute("data-heat", "failed");
    });
    return heatLoad;
  }
  function toggleHeatmaps() {
    var page = document.querySelector(".atlas-feature");
    var button = document.querySelector(".atlas-heat-toggle");
    if (!page || !heatFigs || !button || button.disabled) return;
    var off = page.classList.toggle("atlas-heat-off");
    button.setAttribute("aria-pressed", off ? "false" : "true");
    button.firstChild.textContent = off ? "Heatmaps off " : "Heatmaps on ";
    if (!off) loadHeatmaps();
  }

  /* ---- recipe fields -------------------------------------------------------------------- */
  // A recipe's fields are feature.json's (the primary recipe's: its "recipe"; another's: its
  // entry of "recipes"), written into the <pre> as text when the reader first opens them; a
  // page read from disk keeps the sentence that points to feature.json.
  function sortedJSON(value) {
    if (Array.isArray(value)) return value.map(sortedJSON);
    if (value === null || typeof value !== "object") return value;
    var out = {};
    Object.keys(value).sort().forEach(function (k) { out[k] = sortedJSON(value[k]); });
    return out;
  }
  function setupRecipes() {
    document.querySelectorAll("details.atlas-recipe[data-name]").forEach(function (d) {
      d.addEventListener("toggle", function () {
        if (!d.open || d.hasAttribute("data-filled")) return;
        d.setAttribute("data-filled", "");
        getJSON("feature.json").then(function (rec) {
          var name = d.getAttribute("data-name"), found = null;
          (rec.recipes || []).forEach(function (r) {
            if (r.name === name && found === null) found = "recipe" in r ? r.recipe : rec.recipe;
          });
          if (found) d.querySelector("pre").textContent = JSON.stringify(sortedJSON(found), null, 1);
        }, function () { /* file://: the sentence stays */ });
      });
    });
  }

  /* ---- attribution map ----------------------------------------------------------------- */
  function toggleAttribution() {
    var buttons = document.querySelectorAll(".atlas-attr-toggle");
    if (!buttons.length) return;
    var on = document.querySelector(".atlas-feature").classList.toggle("atlas-attr-on");
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", on ? "true" : "false"); });
  }
  function setupAttribution() {
    document.querySelectorAll(".atlas-attr-toggle").forEach(function (b) {
      b.addEventListener("click", toggleAttribution);
    });
  }

  /* ---- feature page: keys, permalink ---------------------------------------------------- */
  var ALIAS = { "[": "h", "]": "l" };
  // The keys, in the footer's first line (they need this script, so it writes them).
  var KEYS = [[["j", "k"], " next/previous unit \u00b7 "], [["h", "l"], " or "],
              [["[", "]"], " previous/next layer \u00b7 "], [["u"], " layer page \u00b7 "],
              [["m"], " heatmaps \u00b7 "], [["a"], " attribution map \u00b7 "], [["/"], " search. "]];
  function keysLine() {
    var line = el("span", "atlas-keys", "Keys: ");
    KEYS.forEach(function (k) {
      k[0].forEach(function (key, j) {
        if (j) line.appendChild(document.createTextNode("/"));
        line.appendChild(el("kbd", null, key));
      });
      line.appendChild(document.createTextNode(k[1]));
    });
    return line;
  }
  function setupKeys() {
    var foot = document.querySelector(".atlas-foot");
    if (foot) foot.insertBefore(keysLine(), foot.firstChild);
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var t = ev.target;
      var typing = t && ((t.tagName === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(t.type)) ||
                         t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
      if (typing) {
        if (ev.key === "Escape") t.blur();
        return;
      }
      var key = ALIAS[ev.key] || ev.key;
      if (key === "m") { toggleHeatmaps(); return; }
      if (key === "a") { toggleAttribution(); return; }
      var link = document.querySelector('a[data-key="' + key + '"]');
      if (link) { ev.preventDefault(); window.location.href = link.href; }
    });
  }
  // The Cite block is as built: the absolute permalink when the site's URL was given, else
  // the page's path and a sentence saying that the atlas has no canonical address (never the
  // address this page happens to be read at: a mirror, a local copy or a preview).
  function setupCite() {
    var bib = document.querySelector(".atlas-bibtex");
    var copy = document.querySelector(".atlas-copy");
    if (copy && bib) copy.addEventListener("click", function () {
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard) navigator.clipboard.writeText(bib.textContent).then(done, function () {});
    });
  }

  /* ---- version selector (published sites: mike's versions.json at the site root) ------- */
  // The page knows its own version (data-version) and its version's root (data-base, a URL
  // relative to the page); versions.json lies one level above that root.
  function versionRoot(box) {
    return new URL(join(box.getAttribute("data-base"), ""), window.location.href).href;
  }
  function siteRoot(box) { return new URL("../", versionRoot(box)).href; }

  function setupVersion(box) {
    var mine = box.getAttribute("data-version");
    var select = box.querySelector("select");
    var root = versionRoot(box);
    var here = window.location.href.slice(root.length).replace(/[?#].*$/, "");
    if (window.location.href.indexOf(root) !== 0) here = "";
    getJSON(siteRoot(box) + "versions.json").then(function (versions) {
      if (!Array.isArray(versions) || !versions.length) return;
      select.textContent = "";
      versions.forEach(function (v) {
        var opt = el("option", "", v.title || v.version);
        if (v.aliases && v.aliases.length) opt.textContent += " (" + v.aliases.join(", ") + ")";
        opt.value = v.version;
        if (v.version === mine) opt.selected = true;
        select.appendChild(opt);
      });
      select.addEventListener("change", function () {
        window.location.href = siteRoot(box) + encodeURIComponent(select.value) + "/" + here;
      });
      var newest = versions[0];
      if (newest.version !== mine) {
        var note = box.querySelector(".atlas-outdated");
        note.textContent = "You are reading version " + mine + ". A newer version exists: ";
        var a = el("a", "", newest.title || newest.version);
        a.href = siteRoot(box) + encodeURIComponent(newest.version) + "/" + here;
        note.appendChild(a);
        note.appendChild(document.createTextNode(". This page stays as it is, so citations of it keep their meaning."));
        note.hidden = false;
      }
      box.classList.add("atlas-version-ready");
    }, function () { /* opened from disk, or no versions.json: the baked version stays */ });
  }

  /* ---- layer page: the grid, filter and sort --------------------------------------------- */
  // units.json (pipeline/site/grid.py), beside the layer page: every unit with a page in
  // columns, "units" and per unit "thumb" (index into "thumbs", -1: none), "top_classes"
  // (numbers into "classes"), "concepts" (numbers into "words", the label first), "vs_best",
  // "z_rank", "trusted", "afc", "afc_best", "foreground", "area", "accented" (the file:
  // "accent") and "example" (in the "examples" folder); a column the layer lacks is left out.
  // The grid is virtual: only the rows in view, and a screen's height above and below, are in
  // the document (a layer of 16,384 units would otherwise lay out 16,384 tiles); scrolling
  // draws the others. Filter, sort and the tile switch work on the columns. The page holds a
  // plain list of links to every unit in a <noscript> (readers without JavaScript, crawlers);
  // where units.json cannot be fetched (a page opened from disk) that list is shown instead.
  var TILE_KEY = "atlas-tiles";  // localStorage: what the layer pages' tiles show
  var TILE_MIN = 96, TILE_GAP = 4;  // as atlas.css's .atlas-grid: minmax(96px, 1fr), gap 4px
  var NO_TILE = { vis: "not visualized", acc: "no accentuation", ex: "no dataset example" };
  function ratioText(x) {  // fidelity.ratio: 0.43, 2.1, 12.3, 1,234
    if (x < 1) return String(Number(x.toPrecision(2)));
    return x < 100 ? x.toFixed(1) : Math.round(x).toLocaleString("en-US");
  }
  function setupGrid(grid) {
    var input = document.querySelector(".atlas-filter-input");
    var sort = document.querySelector(".atlas-sort");
    var trusted = document.querySelector(".atlas-trusted");
    var afc = document.querySelector(".atlas-afc");
    var tiles = document.querySelectorAll("input[name=atlas-tile]");
    var count = document.querySelector(".atlas-filter-count");
    var data = null, n = 0, shown = [], texts = null, ties = {};
    var win = el("div", "atlas-grid-window");
    var geo = { cols: 1, row: TILE_MIN + TILE_GAP, width: -1 };
    var drawn = { from: -1, to: -1 }, pool = {}, view = "vis", pending = false;

    function col(name, i) {  // a column's value for unit number i, null where absent
      var c = data[name];
      return c && c[i] !== undefined ? c[i] : null;
    }
    function words(i) {
      var c = data.concepts ? data.concepts[i] : null;
      return c ? c.map(function (w) { return data.words[w]; }) : [];
    }
    function text(i) {  // what a word filters on: top classes and concepts, lower case
      if (!texts) texts = new Array(n);
      if (texts[i] === undefined) {
        var c = data.top_classes ? data.top_classes[i].map(function (k) { return data.classes[k]; }) : [];
        texts[i] = c.concat(words(i)).join("\n").toLowerCase();
      }
      return texts[i];
    }
    function title(i) {  // as the pages' tooltips: unit, label, fidelity.short
      var parts = ["unit " + data.units[i]], w = words(i), v = col("vs_best", i), r = col("z_rank", i);
      var a = col("afc", i);
      if (w.length) parts.push(w[0]);
      if (v !== null) parts.push(ratioText(v) + "× best");
      if (r !== null) {
        var tied = ties[r] || 1;
        parts.push("z-rank " + (tied > 1 ? r + "–" + (r + tied - 1) : r) + (data.of ? "/" + data.of : "") +
                   (tied > 1 ? " (" + tied.toLocaleString("en-US") + " tied)" : ""));
      }
      if (a !== null) parts.push("2-AFC " + a.toFixed(2));
      return parts.join(" · ");
    }
    function tileSrc(i, how) {
      var u = data.units[i];
      if (how === "acc") return data.accent && col("accented", i) ? u + "/" + data.accent : null;
      if (how === "ex") { var e = col("example", i); return e ? (data.examples || "") + e : null; }
      var t = col("thumb", i);
      return t !== null && t >= 0 ? u + "/" + data.thumbs[t] : null;
    }
    function tile(i) {
      var u = data.units[i], a = el("a"), src = tileSrc(i, view), w = words(i);
      a.href = u + "/";
      a.title = title(i);
      a.setAttribute("data-u", String(u));
      if (src) {
        var img = el("img");
        img.loading = "lazy";
        img.width = img.height = TILE_MIN;
        img.alt = a.title;
        img.src = src;
        a.appendChild(img);
      } else {
        a.appendChild(el("span", "atlas-novis", NO_TILE[view] || ""));
      }
      if (w.length) a.appendChild(el("span", "atlas-tile-word", w[0]));
      a.appendChild(el("span", null, String(u)));
      return a;
    }

    // layout: as many 96 px columns as fit (CSS auto-fill), rows a tile's width + the gap
    function measure() {
      var w = grid.clientWidth;
      if (w === geo.width) return false;
      geo.width = w;
      geo.cols = Math.max(1, Math.floor((w + TILE_GAP) / (TILE_MIN + TILE_GAP)));
      geo.row = (w - (geo.cols - 1) * TILE_GAP) / geo.cols + TILE_GAP;
      win.style.gridTemplateColumns = "repeat(" + geo.cols + ", minmax(0, 1fr))";
      return true;
    }
    function resize() {
      var rows = Math.ceil(shown.length / geo.cols);
      grid.style.height = Math.max(0, rows * geo.row - TILE_GAP) + "px";
    }
    // the rows in view, and a screen above and below, into the document; tiles still in
    // view are kept as they are (their images stay loaded)
    function render(force) {
      pending = false;
      var top = -grid.getBoundingClientRect().top, screen = window.innerHeight || 800;
      var rows = Math.ceil(shown.length / geo.cols);
      var from = Math.max(0, Math.floor((top - screen) / geo.row));
      var to = Math.max(from, Math.min(rows, Math.ceil((top + 2 * screen) / geo.row)));
      if (!force && from === drawn.from && to === drawn.to) return;
      drawn = { from: from, to: to };
      var next = {}, frag = document.createDocumentFragment();
      for (var k = from * geo.cols; k < Math.min(shown.length, to * geo.cols); k++) {
        var i = shown[k], a = pool[i] || tile(i);
        next[i] = a;
        frag.appendChild(a);
      }
      pool = next;
      win.style.transform = "translateY(" + from * geo.row + "px)";
      win.textContent = "";
      win.appendChild(frag);
    }
    function later() {
      if (!pending) { pending = true; requestAnimationFrame(function () { render(false); }); }
    }

    var KEYS = {  // sort keys: smaller first; units without the value go last
      unit: function (i) { return data.units[i]; },
      v: function (i) { var v = col("vs_best", i); return v === null ? null : -v; },
      r: function (i) { return col("z_rank", i); },
      a: function (i) { var v = col("afc", i); return v === null ? null : -v; },
      f: function (i) { var v = col("foreground", i); return v === null ? null : -v; },
      g: function (i) {
        var f = col("foreground", i), g = col("area", i);
        return f === null || g === null ? null : g - f;
      }
    };
    function recognised(i, how) {  // the recognisability filter (overview.AFC_FILTERS)
      if (!how) return true;
      var a = col("afc", i), best = col("afc_best", i);
      if (a === null) return false;
      if (how === "chance") return a > 0.5;
      if (how === "best") return best !== null && a >= best;
      return a >= parseFloat(how);
    }
    function keep(i, q, range, only, how) {
      var u = data.units[i];
      if (only && col("trusted", i) !== 1) return false;
      if (!recognised(i, how)) return false;
      if (!q) return true;
      if (range) return u >= +range[1] && u <= +range[2];
      if (/^\d+$/.test(q)) return String(u).indexOf(q) === 0;
      return text(i).indexOf(q) >= 0;
    }
    // filter, then sort, then draw from the top of the grid's current view
    function update() {
      var q = input ? input.value.trim().toLowerCase() : "", only = trusted && trusted.checked;
      var how = afc ? afc.value : "", range = /^(\d+)\s*[-:]\s*(\d+)$/.exec(q);
      shown = [];
      for (var i = 0; i < n; i++) if (keep(i, q, range, only, how)) shown.push(i);
      var key = KEYS[sort ? sort.value : "unit"] || KEYS.unit;
      if (key !== KEYS.unit) {
        var keys = {};
        shown.forEach(function (j) { keys[j] = key(j); });
        shown.sort(function (x, y) {
          var a = keys[x], b = keys[y];
          if (a === null && b === null) return x - y;
          if (a === null) return 1;
          if (b === null) return -1;
          return a - b || x - y;
        });
      }
      if (count) count.textContent = q || only || how ? shown.length + " of " + n + " units" : "";
      grid.setAttribute("data-shown", String(shown.length));
      resize();
      render(true);
    }

    // the tile switch: each tile shows the unit's visualization, accentuation or best dataset
    // example; the choice is kept in localStorage (TILE_KEY) for every layer page
    function tileView() {
      for (var i = 0; i < tiles.length; i++) if (tiles[i].checked) return tiles[i].value;
      return "vis";
    }
    function stored() {
      try { return localStorage.getItem(TILE_KEY); } catch (e) { return null; }
    }
    var kept = stored();
    Array.prototype.forEach.call(tiles, function (t) {
      if (kept && t.value === kept) t.checked = true;
      t.addEventListener("change", function () {
        try { localStorage.setItem(TILE_KEY, tileView()); } catch (e) { /* private mode */ }
        view = tileView();
        grid.setAttribute("data-tiles", view);
        if (data) { pool = {}; render(true); }
      });
    });

    function start(d) {
      data = d;
      n = d.units.length;
      (d.z_rank || []).forEach(function (r) { if (r !== null) ties[r] = (ties[r] || 0) + 1; });
      view = tileView();
      grid.setAttribute("data-tiles", view);
      grid.classList.add("atlas-grid-virtual");
      grid.appendChild(win);
      measure();
      // a form restored by the browser (back button) or used meanwhile keeps its state
      update();
      // back (or reload) to where the reader was: the browser restores the scroll position
      // before the grid has its height, so the page keeps it in its history entry
      var st = history.state;
      if (st && typeof st.atlasGridY === "number" && st.atlasGridY > 0) {
        window.scrollTo(0, st.atlasGridY);
        render(true);
      }
      window.addEventListener("pagehide", function () {
        try {
          history.replaceState(Object.assign({}, history.state, { atlasGridY: window.scrollY }), "");
        } catch (e) { /* a history that refuses: the position is lost, nothing else */ }
      });
      if (input) input.addEventListener("input", update);
      if (trusted) trusted.addEventListener("change", update);
      if (afc) afc.addEventListener("change", update);
      if (sort) sort.addEventListener("change", update);
      window.addEventListener("scroll", later, { passive: true });
      window.addEventListener("resize", function () { if (measure()) { resize(); render(true); } else later(); });
      if (window.ResizeObserver) {
        new ResizeObserver(function () { if (measure()) { resize(); render(true); } }).observe(grid);
      }
      grid.classList.add("atlas-grid-ready");
      grid.setAttribute("data-ready-ms", String(Math.round(performance.now())));  // benchmarks
    }
    // units.json out of reach (a page read from disk: file:// forbids fetch): the plain list
    function fallback() {
      var list = el("p", "atlas-grid-links"), ns = grid.querySelector("noscript");
      var re = /href="(\d+)\/"/g, m, html = ns ? ns.textContent : "";
      list.appendChild(document.createTextNode("The layer's units (open the site through a web " +
        "server for their images, filter and sort): "));
      while ((m = re.exec(html))) {
        var a = el("a", null, m[1]);
        a.href = m[1] + "/";
        a.setAttribute("data-u", m[1]);
        list.appendChild(a);
        list.appendChild(document.createTextNode(" "));
      }
      grid.parentNode.insertBefore(list, grid.nextSibling);
      grid.classList.add("atlas-grid-ready");
    }
    getJSON(grid.getAttribute("data-src")).then(start, fallback);
  }

  /* ---- layer page: the map ------------------------------------------------------------- */
  // map.json: units, x, y (in [0, 1], one scale for both axes), thumb (index into thumbs,
  // -1: none), typical [[unit, size]]. Drawn as dots; once a unit's cell on screen is large
  // enough (zoomed in), the thumbnails of the units in view are fetched and drawn instead.
  var MAP_PAD = 16, THUMB_MIN = 28, THUMB_MAX = 96, THUMBS_AT_ONCE = 400;
  function setupMap(view) {
    var canvas = view.querySelector("canvas"), msg = view.querySelector(".atlas-map-msg");
    var ctx = canvas.getContext("2d"), data = null, images = {}, pending = false;
    var state = { k: 1, x: 0, y: 0 };  // screen = base(point) * k + (x, y)
    var base = { s: 1, ox: 0, oy: 0 }, spacing = 1, typical = {};
    function cssSize() { return [canvas.clientWidth || canvas.width, canvas.clientHeight || canvas.height]; }
    function layout() {
      var wh = cssSize(), ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(wh[0] * ratio);
      canvas.height = Math.round(wh[1] * ratio);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      var w = wh[0] - 2 * MAP_PAD, h = wh[1] - 2 * MAP_PAD;
      var mx = Math.max.apply(null, data.x.concat([1e-9])), my = Math.max.apply(null, data.y.concat([1e-9]));
      base.s = Math.min(w / mx, h / my);
      base.ox = MAP_PAD + (w - mx * base.s) / 2;
      base.oy = MAP_PAD + (h - my * base.s) / 2;
      // typical distance between neighbouring units at zoom 1: the median distance to the
      // nearest other unit, over up to 256 units (the map is clustered: area per unit misleads)
      var n = data.units.length, step = Math.max(1, Math.floor(n / 256)), near = [];
      for (var i = 0; i < n; i += step) {
        var best = Infinity;
        for (var j = 0; j < n; j++) {
          if (j === i) continue;
          var dx = data.x[i] - data.x[j], dy = data.y[i] - data.y[j], d = dx * dx + dy * dy;
          if (d < best) best = d;
        }
        if (best < Infinity) near.push(Math.sqrt(best));
      }
      near.sort(function (a, b) { return a - b; });
      spacing = Math.max(1, (near.length ? near[near.length >> 1] : 1) * base.s);
    }
    function screen(i) {
      return [(base.ox + data.x[i] * base.s) * state.k + state.x,
              (base.oy + data.y[i] * base.s) * state.k + state.y];
    }
    function thumbSize() { return Math.min(THUMB_MAX, spacing * state.k * 0.9); }
    function draw() {
      pending = false;
      var wh = cssSize(), w = wh[0], h = wh[1];
      ctx.clearRect(0, 0, w, h);
      var size = thumbSize(), big = size >= THUMB_MIN, inView = [], i, p;
      for (i = 0; i < data.units.length; i++) {
        p = screen(i);
        if (p[0] > -size && p[0] < w + size && p[1] > -size && p[1] < h + size) inView.push(i);
      }
      var withThumbs = big && inView.length <= THUMBS_AT_ONCE, thumbs = 0, dots = 0;
      var accent = getComputedStyle(view).getPropertyValue("--atlas-accent") || "#3f51b5";
      inView.forEach(function (i) {
        var p = screen(i), t = data.thumb[i], img = null;
        if (withThumbs && t >= 0) {
          var src = data.units[i] + "/" + data.thumbs[t];
          img = images[src];
          if (!img) {
            img = images[src] = new Image();
            img.onload = function () { if (!pending) { pending = true; requestAnimationFrame(draw); } };
            img.src = src;
          }
        }
        if (img && img.complete && img.naturalWidth > 0) {
          ctx.drawImage(img, p[0] - size / 2, p[1] - size / 2, size, size);
          thumbs++;
        } else {
          ctx.fillStyle = accent.trim();
          ctx.beginPath();
          ctx.arc(p[0], p[1], Math.max(2.5, Math.min(6, size / 6)), 0, 2 * Math.PI);
          ctx.fill();
          dots++;
        }
        if (typical[data.units[i]]) {
          ctx.strokeStyle = "#d84315";
          ctx.lineWidth = 2;
          ctx.beginPath();
          if (img && img.complete && img.naturalWidth > 0) ctx.rect(p[0] - size / 2, p[1] - size / 2, size, size);
          else ctx.arc(p[0], p[1], 7, 0, 2 * Math.PI);
          ctx.stroke();
        }
      });
      canvas.setAttribute("data-thumbs", String(thumbs));
      canvas.setAttribute("data-dots", String(dots));
      canvas.setAttribute("data-zoom", String(Math.round(state.k * 100) / 100));
      if (msg) msg.textContent = data.units.length + " units · zoom " + (Math.round(state.k * 10) / 10) + "×" +
        (big && !withThumbs ? " · zoom in further for thumbnails" : !big ? " · zoom in for thumbnails" : "");
    }
    function redraw() { if (!pending) { pending = true; requestAnimationFrame(draw); } }
    function zoomAt(factor, cx, cy) {
      var k = Math.max(1, Math.min(64, state.k * factor));
      factor = k / state.k;
      state.x = cx - (cx - state.x) * factor;
      state.y = cy - (cy - state.y) * factor;
      state.k = k;
      if (k === 1) { state.x = 0; state.y = 0; }
      redraw();
    }
    function hit(cx, cy) {
      var best = -1, bestD = Infinity, size = thumbSize(), r = Math.max(8, size / 2);
      for (var i = 0; i < data.units.length; i++) {
        var p = screen(i), dx = Math.abs(p[0] - cx), dy = Math.abs(p[1] - cy);
        if (dx <= r && dy <= r && dx * dx + dy * dy < bestD) { best = i; bestD = dx * dx + dy * dy; }
      }
      return best;
    }
    function local(ev) {
      var r = canvas.getBoundingClientRect();
      return [ev.clientX - r.left, ev.clientY - r.top];
    }
    var drag = null;
    canvas.addEventListener("wheel", function (ev) {
      if (!data) return;
      ev.preventDefault();
      var p = local(ev);
      zoomAt(Math.pow(1.0015, -ev.deltaY), p[0], p[1]);
    }, { passive: false });
    canvas.addEventListener("pointerdown", function (ev) {
      drag = { x: ev.clientX, y: ev.clientY, sx: state.x, sy: state.y, moved: false };
    });
    window.addEventListener("pointermove", function (ev) {
      if (!drag || !data) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved && state.k > 1) { state.x = drag.sx + dx; state.y = drag.sy + dy; redraw(); }
    });
    window.addEventListener("pointerup", function () { setTimeout(function () { drag = null; }, 0); });
    canvas.addEventListener("click", function (ev) {
      if (!data || (drag && drag.moved)) return;
      var p = local(ev), i = hit(p[0], p[1]);
      if (i >= 0) window.location.href = data.units[i] + "/";
    });
    canvas.addEventListener("mousemove", function (ev) {
      if (!data) return;
      var p = local(ev), i = hit(p[0], p[1]);
      canvas.style.cursor = i >= 0 ? "pointer" : state.k > 1 ? "grab" : "default";
      canvas.title = i >= 0 ? "unit " + data.units[i] : "";
    });
    view.querySelectorAll("button[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        if (!data) return;
        var wh = cssSize(), z = b.getAttribute("data-zoom");
        if (z === "reset") { state = { k: 1, x: 0, y: 0 }; redraw(); }
        else zoomAt(z === "in" ? 2 : 0.5, wh[0] / 2, wh[1] / 2);
      });
    });
    // for tests and scripts: where unit u is drawn, in client coordinates (null if not mapped)
    canvas.atlasPoint = function (u) {
      var i = data ? data.units.indexOf(u) : -1;
      if (i < 0) return null;
      var p = screen(i), r = canvas.getBoundingClientRect();
      return [r.left + p[0], r.top + p[1]];
    };
    getJSON(view.getAttribute("data-src")).then(function (d) {
      data = d;
      (d.typical || []).forEach(function (t) { typical[t[0]] = true; });
      layout();
      draw();
      canvas.setAttribute("data-drawn-ms", String(Math.round(performance.now())));  // benchmarks
      window.addEventListener("resize", function () { layout(); redraw(); });
      view.classList.add("atlas-map-ready");
    }, function () {
      if (msg) msg.textContent = "The map could not be loaded (open the site through a web server).";
    });
  }

  function init() {
    document.querySelectorAll("form.atlas-words").forEach(setupWords);
    startGrids();
    document.querySelectorAll(".atlas-map-view[data-src]").forEach(setupMap);
    document.querySelectorAll(".atlas-version[data-version]").forEach(setupVersion);
    setupHeaderSearch();
    if (document.querySelector(".atlas-feature")) {
      // the quantile rows come from feature.json: the heatmaps wait for them (one colour
      // scale for every example shown); a page read from disk keeps the section's note
      var quant = document.querySelector(".atlas-quantiles[data-shown]");
      if (quant) {
        getJSON("feature.json").then(function (rec) { drawQuantiles(quant, rec); })
          .catch(function () { quant.setAttribute("data-failed", ""); })
          .then(setupHeatmaps);
      } else {
        setupHeatmaps();
      }
      var similar = document.querySelector(".atlas-similar[data-shown]");
      if (similar) {
        var models = getJSON(join(siteBase(), "models.json")).catch(function () { return {}; });
        Promise.all([getJSON("feature.json"), models]).then(function (r) {
          drawSimilar(similar, r[0], r[1]);
        }).catch(function () { similar.setAttribute("data-failed", ""); });
      }
      // an example's id is cut to the figure's width: the whole id on hover
      document.querySelectorAll(".atlas-id").forEach(function (e) { e.title = e.textContent; });
      setupAttribution();
      setupRecipes();
      setupKeys();
      setupCite();
    }
  }
  // A layer grid starts at once: this script runs at the end of the page, after the grid's
  // element, and the page preloads units.json, so the tiles need not wait for the other work
  // of DOMContentLoaded.
  var gridsStarted = false;
  function startGrids() {
    if (gridsStarted) return;
    gridsStarted = true;
    document.querySelectorAll(".atlas-grid[data-src]").forEach(setupGrid);
  }
  if (document.querySelector(".atlas-grid[data-src]")) startGrids();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
