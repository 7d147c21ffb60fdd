import { Tokenizer } from '@huggingface/tokenizers';
import fs from 'fs';
const j = JSON.parse(fs.readFileSync('/work/shared/models/pydocs-llama-12m/tokenizer.json','utf8'));
const tok = new Tokenizer(j, {});
for (const f of ['dev','train']) {
const text = fs.readFileSync(`/work/shared/data/pydocs/${f}.txt`,'utf8');
const cps = Array.from(text);
let a=0,b=0;
for (let i=0;i<text.length;i+=200000) a+=tok.encode(text.slice(i,i+200000)).ids.length;
for (let i=0;i<cps.length;i+=200000) b+=tok.encode(cps.slice(i,i+200000).join('')).ids.length;
console.log(f, 'utf16 chunks', a, 'codepoint chunks', b, cps.length);
}
