// `examples.js-wordcount`: counts the words of `args.text` (case-folded,
// letters and digits only) and returns the `args.top` (default 10) most
// frequent as [word, count] pairs. Prints a summary (console output lands in
// the job log) and records the distinct count as metadata. The JavaScript
// twin of plugins/wordcount.
import { job, progress, setMetadata, JobError } from '../../../sdk/js/src/index.js';

/**
 * @param {{ text: string, top?: number }} args
 * @returns {{ total_words: number, distinct_words: number, top: [string, number][] }}
 */
export function wordcount({ text, top = 10 }) {
  if (typeof text !== 'string') throw new JobError('invalid args: `text` must be a string');
  if (!Number.isInteger(top) || top < 0) throw new JobError('invalid args: `top` must be a non-negative integer');
  /** @type {Map<string, number>} */
  const counts = new Map();
  let totalWords = 0;
  let word = '';
  for (const ch of text + ' ') {
    if (isWordChar(ch)) {
      word += ch;
    } else if (word) {
      const folded = word.toLowerCase();
      counts.set(folded, (counts.get(folded) ?? 0) + 1);
      totalWords += 1;
      word = '';
    }
  }
  const distinctWords = counts.size;
  const ranked = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  console.log(`${totalWords} words, ${distinctWords} distinct`);
  setMetadata('distinct_words', distinctWords);
  progress(100);
  return { total_words: totalWords, distinct_words: distinctWords, top: ranked.slice(0, top) };
}

// Uncased letters and digits beyond ASCII: Hebrew, Arabic, Indic, Thai and
// Lao, kana, CJK ideographs, Hangul, fullwidth digits.
const UNCASED_WORD_RANGES = [
  [0x00aa, 0x00aa], [0x00ba, 0x00ba], [0x05d0, 0x05f2], [0x0620, 0x064a], [0x0660, 0x0669],
  [0x066e, 0x06d3], [0x06d5, 0x06d5], [0x06f0, 0x06ff], [0x0900, 0x0963], [0x0966, 0x0dff],
  [0x0e01, 0x0e3e], [0x0e40, 0x0eff], [0x3005, 0x3007], [0x3041, 0x3096], [0x309d, 0x309f],
  [0x30a1, 0x30fa], [0x30fc, 0x30ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xac00, 0xd7a3],
  [0xf900, 0xfaff], [0xff10, 0xff19], [0x20000, 0x3134f],
];

/**
 * Letters and digits, as Rust's `char::is_alphanumeric` for the common
 * scripts. (StarlingMonkey's RegExp has no `\p{...}` classes and there is no
 * Intl, so this cannot be `/[\p{Alphabetic}\p{N}]/u`.)
 * @param {string} ch one code point
 */
export function isWordChar(ch) {
  const cp = /** @type {number} */ (ch.codePointAt(0));
  if (cp < 0x80) return (cp >= 0x30 && cp <= 0x39) || ((cp | 0x20) >= 0x61 && (cp | 0x20) <= 0x7a);
  if (ch.toLowerCase() !== ch.toUpperCase()) return true; // cased letters of any script
  return UNCASED_WORD_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);
}

export const run = job(wordcount);
