import sanitizeHtml from 'sanitize-html'

const NO_HTML: sanitizeHtml.IOptions = {
  allowedTags: [],
  allowedAttributes: {},
  disallowedTagsMode: 'discard',
}

/** sanitize-html returns HTML-escaped text; we store plain text, so undo exactly its four escapes. */
function unescapeHtml(text: string): string {
  return text
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&')
}

/**
 * Plain text with every HTML tag removed (script/style contents too). Entity-encoded tags such as
 * `&lt;b&gt;` decode to tags, so the stripping repeats until nothing changes: the result never holds
 * markup, while text like `a < b & c` survives as written.
 */
export function stripHtml(input: string): string {
  let text = input
  for (let i = 0; i < 5; i++) {
    if (!text.includes('<') && !text.includes('&')) return text
    const next = unescapeHtml(sanitizeHtml(text, NO_HTML))
    if (next === text) return text
    text = next
  }
  return text
}
