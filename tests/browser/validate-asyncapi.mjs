// Validates an AsyncAPI document with the official parser: reads the document from
// the file named on the command line, prints every diagnostic as JSON, and exits 1
// when one of them is an error (severity 0).
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';

const text = await readFile(process.argv[2], 'utf8');
const { document, diagnostics } = await new Parser().parse(text);
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message,
    path: d.path.join('/') }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (!document || errors.length) {
  console.log(`invalid: ${errors.length} errors`);
  process.exit(1);
}
console.log(`valid: AsyncAPI ${document.version()}, ${document.operations().length} operations, `
  + `${document.allMessages().length} messages`);
