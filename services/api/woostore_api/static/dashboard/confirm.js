// The one confirmation dialog: what it is about, what confirming does, and the answer.

const els = {
  dialog: document.getElementById('confirm-dialog'),
  title: document.getElementById('confirm-title'),
  text: document.getElementById('confirm-text'),
  button: document.getElementById('confirm-button'),
};

let answer = null; // resolves the question being asked

// Resolves true if the user confirmed; false if cancelled, dismissed (Esc) or superseded.
export function confirmAction({ title, text, confirm }) {
  dismissConfirm();
  els.title.textContent = title;
  els.text.textContent = text;
  els.button.textContent = confirm;
  els.dialog.returnValue = '';
  els.dialog.showModal();
  return new Promise((resolve) => {
    answer = resolve;
  });
}

export function dismissConfirm() {
  if (els.dialog.open) els.dialog.close();
  settle(false);
}

function settle(confirmed) {
  const resolve = answer;
  answer = null;
  resolve?.(confirmed);
}

els.dialog.addEventListener('close', () => settle(els.dialog.returnValue === 'confirm'));
