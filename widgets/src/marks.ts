/**
 * What shows that a cell is agentnb's: a line above each cell an `%%agents`
 * run inserted (its step, who wrote it, whether the user edited it, the run),
 * read from the cell's `metadata.agentnb`, so it is there again after a save
 * and a reload. And the jump from the chat widget to a step's cell.
 */
import type { Cell, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { JSONObject } from '@jupyterlab/services';

const MARKED = 'agentnb-cell';
const MARK = 'data-agentnb-mark';
const JUMP = 'agentnb-jump';
const TARGET = /^agentnb-to-([A-Za-z0-9_-]{1,64})$/;
const FLASH = 'agentnb-cell-flash';

function tags(cell: Cell): JSONObject | null {
  const meta = cell.model.getMetadata('agentnb');
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) {
    return null;
  }
  const found = meta as JSONObject;
  return typeof found.key === 'string' ? found : null;
}

/** The words of a cell's mark: `agentnb · step 2 · analyst · edited by you · run 1a2b3c`. */
export function markText(meta: JSONObject, kind: string): string {
  const parts = ['agentnb'];
  const step = typeof meta.step === 'number' ? meta.step : null;
  const what = meta.kind;
  if (what === 'report') {
    parts.push('final report');
  } else if (step !== null) {
    parts.push(`step ${step}`);
    if (what === 'reason' || kind === 'markdown') {
      parts.push('why');
    } else {
      if (typeof meta.author === 'string' && meta.author !== 'unknown') {
        parts.push(meta.author);
      }
      if (meta.edited === true) {
        parts.push('edited by you');
      }
    }
  }
  if (typeof meta.run_id === 'string' && meta.run_id) {
    parts.push(`run ${meta.run_id.slice(0, 6)}`);
  }
  return parts.join(' · ');
}

/**
 * The mark is the cell's `data-agentnb-mark`, shown by the stylesheet (an
 * `::after` of the cell): no element of ours among the cell's own, which
 * Lumino places by their index in the cell's node.
 */
function decorate(cell: Cell): void {
  const meta = tags(cell);
  const node = cell.node;
  if (meta === null) {
    if (node.hasAttribute(MARK)) {
      node.removeAttribute(MARK);
      cell.removeClass(MARKED);
    }
    return;
  }
  const text = markText(meta, cell.model.type);
  if (node.getAttribute(MARK) !== text) {
    node.setAttribute(MARK, text);
  }
  cell.addClass(MARKED);
  cell.addClass(`${MARKED}-${cell.model.type === 'markdown' ? 'markdown' : 'code'}`);
}

/** Marks the agentnb cells of a notebook, now and as its cells change. */
export function watchMarks(panel: NotebookPanel): void {
  let pending = false;
  const update = (): void => {
    pending = false;
    if (!panel.isDisposed) {
      panel.content.widgets.forEach(decorate);
    }
  };
  // Once the notebook has made the widgets of the cells that changed.
  const later = (): void => {
    if (!pending) {
      pending = true;
      requestAnimationFrame(update);
    }
  };
  void panel.context.ready.then(() => {
    const model = panel.model;
    if (model === null || panel.isDisposed) {
      return;
    }
    model.cells.changed.connect(later);
    panel.disposed.connect(() => model.cells.changed.disconnect(later));
    later();
  });
}

/** The cell id an element of the chat widget jumps to, from its classes. */
function target(element: Element): string | null {
  for (const name of Array.from(element.classList)) {
    const found = TARGET.exec(name);
    if (found !== null) {
      return found[1];
    }
  }
  return null;
}

async function reveal(panel: NotebookPanel, id: string): Promise<boolean> {
  const notebook = panel.content;
  const index = notebook.widgets.findIndex(cell => cell.model.id === id);
  if (index < 0) {
    return false;
  }
  const cell = notebook.widgets[index];
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(cell, 'center');
  // in command mode, as after Esc: a key typed next does not edit the cell
  notebook.mode = 'command';
  notebook.node.focus();
  cell.addClass(FLASH);
  window.setTimeout(() => {
    if (!cell.isDisposed) {
      cell.removeClass(FLASH);
    }
  }, 1600);
  return true;
}

/**
 * A click on a `.agentnb-jump.agentnb-to-<cell id>` element (a folded step in
 * the chat widget, live or static) selects that cell of the notebook the
 * element is in and scrolls to it. Classes, not data attributes: the static
 * chat of an untrusted cell goes through JupyterLab's sanitiser, which keeps
 * classes only.
 */
export function listenForJumps(tracker: INotebookTracker): void {
  document.addEventListener('click', event => {
    const clicked = event.target instanceof Element ? event.target : null;
    const jump = clicked?.closest(`.${JUMP}`) ?? null;
    const id = jump === null ? null : target(jump);
    if (jump === null || id === null) {
      return;
    }
    const panel = tracker.find(p => p.node.contains(jump)) ?? tracker.currentWidget;
    if (panel === null) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    void reveal(panel, id).then(found => {
      if (!found) {
        jump.classList.add('agentnb-jump-gone');
        jump.setAttribute('title', 'that cell is no longer in this notebook');
      }
    });
  });
}
