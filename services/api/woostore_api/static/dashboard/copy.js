// Copying a secret shown on the page (a store's password, a new key) with one button.

const SAID_MS = 2000;

// Copies `source`'s text; the button says it did. Without the Clipboard API (it needs a secure
// context) the text is selected instead, for Ctrl+C.
export async function copyText(source, button) {
  const label = button.dataset.label ?? button.textContent;
  button.dataset.label = label;
  try {
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = 'Copied';
  } catch {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = 'Press Ctrl+C';
  }
  setTimeout(() => (button.textContent = label), SAID_MS);
}
