// Renders every ```mermaid block of the handouts given as arguments in headless
// Chromium, the way a forge shows them: Mermaid's own dist bundle in a page, each SVG in
// an 890 px column and scaled to fit it (max-width: 100%), once with Mermaid's theme
// "default" and once with "dark". A block fails when Mermaid cannot parse it, when any
// of its texts renders smaller than MIN_PX (computed font size times the SVG's scale on
// the page), or when a text's contrast against its box's fill is below MIN_CONTRAST.
// Run by hack/diagrams-check.sh, which installs what this needs:
//
//   node hack/diagrams/render.mjs --modules .cache/mermaid/node_modules --pid-file F --user-data-dir D labs/*/README.md
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const COLUMN_PX = 890; // a forge's text column
const MIN_PX = 11;
const MIN_CONTRAST = 4.5;
// The page behind the diagram, as a forge's light and dark modes paint it.
const THEMES = { default: '#ffffff', dark: '#0d1117' };
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function parseArgs(argv) {
  const o = { files: [], screenshots: '', modules: '', pidFile: '', userDataDir: '', chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--modules') o.modules = argv[++i];
    else if (a === '--pid-file') o.pidFile = argv[++i];
    else if (a === '--user-data-dir') o.userDataDir = argv[++i];
    else if (a === '--chromium') o.chromium = argv[++i];
    else if (a === '--screenshots') o.screenshots = argv[++i];
    else if (a === '--verbose') o.verbose = true;
    else o.files.push(a);
  }
  if (!o.modules || !o.userDataDir || o.files.length === 0) {
    console.error('usage: render.mjs --modules DIR --user-data-dir DIR [--pid-file F] [--chromium PATH] [--screenshots DIR] [--verbose] HANDOUT.md...');
    process.exit(2);
  }
  return o;
}

// blocks lists a markdown file's ```mermaid blocks, each with the line of its fence.
function blocks(text) {
  const out = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```mermaid') continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j].trim() !== '```') j++;
    out.push({ line: start, source: lines.slice(start, j).join('\n') });
    i = j;
  }
  return out;
}

// measure runs in the page: renders one block with one theme into the 890 px column and
// reads every text's rendered size, colour and the fill of the box it sits in.
async function measure({ source, theme, pageBg, n }) {
  const col = document.getElementById('column');
  document.body.style.background = pageBg;
  col.innerHTML = '';
  // eslint-disable-next-line no-undef
  const m = globalThis.mermaid;
  m.initialize({ startOnLoad: false, theme, securityLevel: 'strict' });
  try {
    await m.parse(source);
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
  let svgText;
  try {
    ({ svg: svgText } = await m.render('d' + n, source));
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
  col.innerHTML = svgText;
  const svg = col.querySelector('svg');
  const vb = svg.viewBox.baseVal;
  // As a forge shows it: at its own size, scaled down to the column when wider
  // (max-width: 100%), its height following.
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  svg.style.width = vb.width + 'px';
  svg.style.maxWidth = '100%';
  svg.style.height = 'auto';
  svg.style.display = 'block';
  const box = svg.getBoundingClientRect();
  const scale = vb && vb.width ? box.width / vb.width : 1;

  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c || '');
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const bg = parse(getComputedStyle(document.body).backgroundColor);
  const over = (c, under) => ({
    r: c.r * c.a + under.r * (1 - c.a), g: c.g * c.a + under.g * (1 - c.a), b: c.b * c.a + under.b * (1 - c.a), a: 1,
  });
  // The fill behind a text: its node's or subgraph's shape, or an edge label's
  // background, composited over the page when it is translucent.
  const fillBehind = (el) => {
    const g = el.closest('g.node, g.cluster, g.edgeLabel');
    let shape = null;
    let fill = null;
    if (g && g.classList.contains('edgeLabel')) {
      fill = parse(getComputedStyle(el.closest('span, p, div') || el).backgroundColor);
    } else if (g) {
      shape = g.querySelector(':scope > .label-container, :scope > rect, :scope > polygon, :scope > circle, :scope > ellipse, :scope > path, :scope > g > path');
      if (shape) fill = parse(getComputedStyle(shape).fill);
    }
    if (!fill || fill.a === 0) return { fill: bg, what: g ? 'page (box unfilled)' : 'page' };
    return { fill: fill.a < 1 ? over(fill, bg) : fill, what: g ? g.getAttribute('id') || g.getAttribute('class') : 'page' };
  };

  const texts = [];
  const walker = document.createTreeWalker(svg, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    const text = t.textContent.trim();
    if (!text || !el || el.closest('style, title, desc, defs')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || cs.display === 'none') continue;
    const svgText = el instanceof SVGElement;
    const color = parse(svgText ? cs.fill : cs.color);
    const { fill, what } = fillBehind(el);
    texts.push({ text, px: parseFloat(cs.fontSize) * scale, color, fill, box: what });
  }
  return { scale, width: box.width, naturalWidth: vb ? vb.width : box.width, texts };
}

function luminance({ r, g, b }) {
  const f = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

const hex = (c) => '#' + [c.r, c.g, c.b].map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const require = createRequire(path.resolve(o.modules, 'package.json'));
  const puppeteer = require('puppeteer');
  const bundle = path.join(path.dirname(require.resolve('mermaid/package.json')), 'dist', 'mermaid.min.js');
  const version = require('mermaid/package.json').version;

  const browser = await puppeteer.launch({
    executablePath: o.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    userDataDir: o.userDataDir, // a fresh one: puppeteer passes it as --user-data-dir
    // On a signal this script ends the browser itself, below.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  const proc = browser.process();
  if (o.pidFile && proc) fs.writeFileSync(o.pidFile, String(proc.pid));
  const close = async () => {
    try { await browser.close(); } catch { /* already gone */ }
  };
  // Ctrl-C and the like: Chromium runs as the leader of a process group of its own
  // (puppeteer starts it detached), so end the group, its renderers with it.
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(sig, () => {
      try { if (proc && proc.pid) process.kill(-proc.pid, 'SIGKILL'); } catch { /* already gone */ }
      console.error(`render.mjs: ${sig}: stopped Chromium`);
      process.exit(code);
    });
  }

  const failures = [];
  let smallest = null;
  let count = 0;
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: COLUMN_PX, height: 900 });
    page.on('pageerror', (e) => console.error('page error:', e.message));
    // A page of its own with Mermaid's bundle as a file: Chromium compiles it faster
    // than a script injected as text.
    const html = path.join(o.userDataDir, 'diagrams.html');
    fs.writeFileSync(html, `<!doctype html><html><head><meta charset="utf-8"><style>
      body { margin: 0; font-family: -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
      #column { width: ${COLUMN_PX}px; box-sizing: border-box; }
      </style><script src="${pathToFileURL(bundle)}"></script></head><body><div id="column"></div></body></html>`);
    await page.goto(pathToFileURL(html).href);
    if (!(await page.evaluate(() => typeof globalThis.mermaid === 'object'))) throw new Error(`${bundle} did not load`);
    console.log(`Mermaid ${version} in ${(await browser.version())}, column ${COLUMN_PX} px, themes ${Object.keys(THEMES).join(' and ')} ` +
      `(started in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    for (const file of o.files) {
      const t1 = Date.now();
      const bs = blocks(fs.readFileSync(file, 'utf8'));
      let fileSmallest = Infinity;
      const before = failures.length;
      for (const [i, b] of bs.entries()) {
        const where = `${file}, block ${i + 1} (line ${b.line})`;
        for (const [theme, pageBg] of Object.entries(THEMES)) {
          count++;
          const r = await page.evaluate(measure, { source: b.source, theme, pageBg, n: count });
          if (r.error) {
            failures.push(`${where}: Mermaid cannot parse it: ${r.error}\n${b.source}`);
            break; // the same with every theme
          }
          if (o.screenshots) {
            fs.mkdirSync(o.screenshots, { recursive: true });
            const shot = path.join(o.screenshots, `${path.basename(path.dirname(file))}-${i + 1}-${theme}.png`);
            await (await page.$('#column')).screenshot({ path: shot });
          }
          if (o.verbose) {
            const min = Math.min(...r.texts.map((t) => t.px));
            console.log(`  ${where}, theme ${theme}: ${Math.round(r.naturalWidth)} px wide, scale ${r.scale.toFixed(2)}, smallest text ${min.toFixed(1)} px`);
          }
          for (const t of r.texts) {
            if (o.verbose && t.color) {
              console.log(`    ${t.px.toFixed(1)} px, contrast ${contrast(t.color, t.fill).toFixed(2)} (${hex(t.color)} on ${hex(t.fill)}, ${t.box}): ${t.text}`);
            }
            fileSmallest = Math.min(fileSmallest, t.px);
            if (!smallest || t.px < smallest.px) smallest = { ...t, where, theme, scale: r.scale, naturalWidth: r.naturalWidth };
            if (t.px < MIN_PX) {
              failures.push(`${where}, theme ${theme}: "${t.text}" renders at ${t.px.toFixed(1)} px (< ${MIN_PX} px): ` +
                `the diagram is ${Math.round(r.naturalWidth)} px wide, scaled by ${r.scale.toFixed(2)} to fit ${COLUMN_PX} px`);
            }
            if (!t.color) {
              failures.push(`${where}, theme ${theme}: "${t.text}" has no computed colour`);
              continue;
            }
            const cr = contrast(t.color, t.fill);
            if (cr < MIN_CONTRAST) {
              failures.push(`${where}, theme ${theme}: "${t.text}" has contrast ${cr.toFixed(2)} (< ${MIN_CONTRAST}): ` +
                `text ${hex(t.color)} on ${hex(t.fill)} (${t.box})`);
            }
          }
        }
      }
      const status = failures.length === before ? 'ok' : `${failures.length - before} FAILED`;
      const small = bs.length ? `, smallest text ${fileSmallest.toFixed(1)} px` : '';
      console.log(`${file}: ${bs.length} blocks x ${Object.keys(THEMES).length} themes ${status}${small} ` +
        `(${((Date.now() - t1) / 1000).toFixed(1)} s, ${((Date.now() - t0) / 1000).toFixed(1)} s in all)`);
    }
  } finally {
    await close();
  }

  for (const f of failures) console.error('FAIL ' + f);
  if (smallest) {
    console.log(`Smallest text: ${smallest.px.toFixed(1)} px, "${smallest.text}" in ${smallest.where} (theme ${smallest.theme}, ` +
      `diagram ${Math.round(smallest.naturalWidth)} px wide, scale ${smallest.scale.toFixed(2)})`);
  }
  console.log(`${count} renders of ${count / Object.keys(THEMES).length} blocks: ${failures.length} problems`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
