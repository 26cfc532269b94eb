// bench/liquid/run_node.mjs - liquidjs on the benchmark template.
//
//   node run_node.mjs TEMPLATE DATA.json N OUT
//
// Parses TEMPLATE once, renders it N times with DATA (renderSync, the fastest
// path), writes the last output to OUT and prints "renders_per_second=R ...".
// liquidjs escapes quotes differently from Ruby Liquid, so bench/run_liquid.sh
// compares it on speed only.
import { readFileSync, writeFileSync } from 'node:fs';
import { Liquid } from 'liquidjs';

const [templatePath, dataPath, nArg, outPath] = process.argv.slice(2);
const n = Number.parseInt(nArg, 10);
const engine = new Liquid({ strictFilters: true });
const tpl = engine.parse(readFileSync(templatePath, 'utf8'));
const data = JSON.parse(readFileSync(dataPath, 'utf8'));
let out = engine.renderSync(tpl, data); // warm-up
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let i = 0; i < n; i++) out = engine.renderSync(tpl, data);
const dt = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
const cpuS = (cpu.user + cpu.system) / 1e6;
writeFileSync(outPath, out);
const version = JSON.parse(readFileSync(new URL('./node_modules/liquidjs/package.json', import.meta.url))).version;
console.log(`renders_per_second=${(n / dt).toFixed(1)} seconds=${dt.toFixed(3)} cpu_renders_per_second=${(n / cpuS).toFixed(1)} cpu_seconds=${cpuS.toFixed(3)} liquidjs=${version} node=${process.versions.node}`);
