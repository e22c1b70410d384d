// Build the JavaScript default dialplan into a WebAssembly component.
//
//   node build.mjs [--out FILE] [--wit DIR]
//
// Defaults: --wit ../../wit (the repository's WIT package), --out
// ./default_dialplan_js.wasm. Uses the componentize() API of componentize-js
// with the `http` and `fetch-event` features disabled, so the component does
// not import wasi:http (the switch refuses it), then checks the imports.

import { componentize } from '@bytecodealliance/componentize-js';
import { componentWit } from '@bytecodealliance/jco';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const opts = {
    wit: resolve(here, '../../wit'),
    out: resolve(process.cwd(), 'default_dialplan_js.wasm'),
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--out' || arg === '-o') opts.out = resolve(process.cwd(), value());
    else if (arg === '--wit' || arg === '-w') opts.wit = resolve(process.cwd(), value());
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node build.mjs [--out FILE] [--wit DIR]');
      process.exit(0);
    } else throw new Error(`unknown argument: ${arg}`);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // componentize-js strips the working directory from the source path and
  // gets it wrong when that directory is `/` ("ork/main/..."): run from here.
  process.chdir(here);
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: join(here, 'dialplan.js'),
    witPath: opts.wit,
    worldName: 'dialplan',
    // Without this the component imports wasi:http and the switch refuses
    // to instantiate it.
    disableFeatures: ['http', 'fetch-event'],
  });

  const wit = await componentWit(component);
  const imports = [...wit.matchAll(/^\s*import\s+([^;{]+?)\s*;/gm)].map((m) => m[1]);
  const exports = [...wit.matchAll(/^\s*export\s+([^;{]+?)\s*;/gm)].map((m) => m[1]);
  const http = imports.filter((i) => i.startsWith('wasi:http/'));
  if (http.length > 0) {
    throw new Error(`component imports wasi:http, which the switch refuses: ${http.join(', ')}`);
  }
  if (!exports.some((e) => e.startsWith('dialtone:switch/router'))) {
    throw new Error(`component does not export dialtone:switch/router (exports: ${exports.join(', ')})`);
  }

  const tmp = `${opts.out}.tmp-${process.pid}`;
  await writeFile(tmp, component);
  await rename(tmp, opts.out);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const mb = (component.length / 1e6).toFixed(1);
  console.log(`wrote ${opts.out} (${mb} MB, ${secs} s)`);
  console.log(`  imports: ${imports.join(', ')}`);
  console.log(`  exports: ${exports.join(', ')}`);
}

main().catch((err) => {
  console.error(`build.mjs: error: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
