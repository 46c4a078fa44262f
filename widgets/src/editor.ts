/**
 * The code editor of the chat widget's "Edit" drawer: the stock ipywidgets
 * Textarea (class `agentnb-edit-code`) gets JupyterLab's own CodeMirror editor
 * over it, with Python highlighting, indentation on Tab and a height that
 * follows the code. The textarea stays the widget's value: every change is
 * written into it as an `input` event, which ipywidgets syncs to the kernel.
 * Where this extension is not loaded (VS Code, classic), the textarea is the
 * editor, sized to the code by the kernel.
 */
import { CodeEditor, type IEditorServices } from '@jupyterlab/codeeditor';
import type { NotebookPanel } from '@jupyterlab/notebook';

const DONE = 'agentnbEditor';
/** A textarea of the Edit drawer that has no editor yet. */
const FRESH = '.agentnb-edit-code textarea:not([data-agentnb-editor])';
const HOST = 'agentnb-code-editor';
const HIDDEN = 'agentnb-replaced';

interface IMounted {
  editor: CodeEditor.IEditor;
  model: CodeEditor.IModel;
  host: HTMLElement;
}

const mounted = new Set<IMounted>();

/** Editors whose textarea left the page (the drawer closed, the run ended). */
function sweep(): void {
  for (const entry of Array.from(mounted)) {
    if (!entry.host.isConnected) {
      mounted.delete(entry);
      entry.editor.dispose();
      entry.model.dispose();
    }
  }
}

function mount(area: HTMLTextAreaElement, services: IEditorServices): void {
  area.dataset[DONE] = '1';
  const host = document.createElement('div');
  host.className = HOST;
  area.insertAdjacentElement('beforebegin', host);
  const model = new CodeEditor.Model({ mimeType: 'text/x-ipython' });
  model.sharedModel.setSource(area.value);
  const editor = services.factoryService.newInlineEditor({
    host,
    model,
    config: { lineNumbers: true, lineWrap: false }
  });
  model.sharedModel.changed.connect(() => {
    const value = model.sharedModel.getSource();
    if (area.value !== value) {
      area.value = value;
      area.dispatchEvent(new Event('input', { bubbles: true }));
    }
  });
  // Keys typed here are the editor's: JupyterLab and Notebook 7 handle their
  // shortcuts as the keydown bubbles up, and Shift+Enter or Ctrl+Enter there
  // would run the %%agents cell again, "d d" delete it. Ctrl/Cmd+S still saves.
  host.addEventListener('keydown', event => {
    const save = (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's';
    if (!save) {
      event.stopPropagation();
    }
  });
  area.classList.add(HIDDEN);
  mounted.add({ editor, model, host });
  // Opened by a click on Edit (which has the focus): the user is about to type.
  // Not when a reopened page draws a drawer that was left open.
  const panel = area.closest('.agentnb-approval');
  if (panel !== null && panel.contains(document.activeElement)) {
    editor.focus();
    const lines = area.value.split('\n');
    editor.setCursorPosition({
      line: lines.length - 1,
      column: lines[lines.length - 1].length
    });
  }
}

function enhance(root: HTMLElement, services: IEditorServices): void {
  if (mounted.size > 0) {
    sweep();
  }
  root.querySelectorAll<HTMLTextAreaElement>(FRESH).forEach(area => mount(area, services));
}

/**
 * Gives each agentnb code textarea that appears in the notebook a code editor.
 * ipywidgets adds a widget's classes after its element is in the page, so any
 * change of the page's tree or classes is a reason to look, once per frame.
 */
export function watchEditors(panel: NotebookPanel, services: IEditorServices): void {
  let pending = false;
  const look = (): void => {
    pending = false;
    if (!panel.isDisposed) {
      enhance(panel.node, services);
    }
  };
  const observer = new MutationObserver(() => {
    if (!pending) {
      pending = true;
      requestAnimationFrame(look);
    }
  });
  observer.observe(panel.node, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ['class']
  });
  panel.disposed.connect(() => observer.disconnect());
  look();
}
