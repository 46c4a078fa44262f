/**
 * Where a run's cells go, that each lands once, and the `%%agents` cell's own
 * display put back when a page attaches to a run it did not start.
 */
import type {
  ISharedCell,
  ISharedCodeCell,
  NotebookPanel
} from '@jupyterlab/notebook';
import type { JSONObject, JSONValue } from '@jupyterlab/services';

export const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';

export interface IRun {
  anchor: string | null;
  run_id: string;
}

interface IPlacement {
  index: number;
  note?: string;
}

export function isObject(value: JSONValue | undefined): value is JSONObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function provenance(cell: ISharedCell): JSONObject {
  const meta = cell.getMetadata('agentnb');
  return meta !== null && typeof meta === 'object' ? (meta as JSONObject) : {};
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A step's outputs as the inserted cell shows them: an `execute_result` keeps
 * no execution count, which was the managed kernel's and would read as one of
 * this notebook's.
 */
function outputsOf(cell: JSONObject): JSONValue[] {
  const outputs = Array.isArray(cell.outputs) ? cell.outputs : [];
  return outputs.map(output =>
    isObject(output) && output.output_type === 'execute_result'
      ? { ...output, execution_count: null }
      : output
  );
}

/** The cells of one run: where they go, and that each lands once. */
export class RunWriter {
  private last: string | null = null;

  constructor(
    private readonly panel: NotebookPanel,
    private readonly run: IRun
  ) {}

  handle(data: JSONObject): JSONObject {
    const key = typeof data.key === 'string' ? data.key : null;
    if (data.action === 'outputs' && key !== null && Array.isArray(data.outputs)) {
      try {
        return { event: 'updated', key, ...this.update(key, data.outputs) };
      } catch (error) {
        return { event: 'error', key, action: 'outputs', message: describe(error) };
      }
    }
    if (data.action !== 'insert' || key === null || !isObject(data.cell)) {
      const message =
        'expected {action: "insert", key, cell} or {action: "outputs", key, outputs}';
      return { event: 'error', key, message };
    }
    try {
      return { event: 'inserted', key, ...this.insert(key, data.cell) };
    } catch (error) {
      return { event: 'error', key, message: describe(error) };
    }
  }

  private insert(key: string, cell: JSONObject): JSONObject {
    const model = this.panel.model;
    if (model === null) {
      throw new Error('the notebook is not loaded');
    }
    const notebook = model.sharedModel;
    // The key is the de-duplication: a cell re-sent, or already in a notebook
    // that was saved and re-opened, is reported where it is, not added again.
    const existing = notebook.cells.findIndex(c => provenance(c).key === key);
    if (existing >= 0) {
      this.last = notebook.cells[existing].id;
      return { cell_id: this.last, index: existing, duplicate: true };
    }
    const kind = cell.cell_type === 'markdown' ? 'markdown' : 'code';
    const { index, note } = this.placement(notebook.cells);
    const source = Array.isArray(cell.source)
      ? cell.source.join('')
      : String(cell.source ?? '');
    // Never trusted, whatever the kernel sent: model-written code made the
    // outputs, and a trusted cell would run the script they might carry.
    const metadata = { ...((cell.metadata ?? {}) as JSONObject) };
    delete metadata.trusted;
    const tags = { ...((metadata.agentnb ?? {}) as JSONObject), key };
    // Through the shared model, not a notebook command: the active cell, the
    // focus and the scroll position stay where the user has them (the notebook
    // widget shifts its active index past cells inserted above it).
    const created = notebook.insertCell(
      index,
      kind === 'markdown'
        ? { cell_type: 'markdown', source, metadata: { ...metadata, agentnb: tags } }
        : {
            cell_type: 'code',
            source,
            outputs: outputsOf(cell),
            metadata: { ...metadata, agentnb: tags },
            execution_count: null
          }
    );
    this.last = created.id;
    return note === undefined
      ? { cell_id: created.id, index }
      : { cell_id: created.id, index, note };
  }

  /**
   * A later step changed what this step's cell shows (a display updated), as
   * a notebook's cell would show it: the cell's outputs are replaced by the
   * kernel's, found by the key in its metadata wherever the user moved it.
   */
  private update(key: string, outputs: JSONValue[]): JSONObject {
    const model = this.panel.model;
    if (model === null) {
      throw new Error('the notebook is not loaded');
    }
    const cells = model.sharedModel.cells;
    const index = cells.findIndex(c => provenance(c).key === key);
    const cell = cells[index];
    if (cell === undefined || cell.cell_type !== 'code') {
      return { cell_id: null, note: 'no such cell in the notebook (deleted?)' };
    }
    // Untrusted before the outputs land, whatever the user trusted since:
    // model-written code made them.
    const cellModel = model.cells.get(index);
    if (cellModel.id === cell.id && cellModel.trusted) {
      cellModel.trusted = false;
    }
    (cell as ISharedCodeCell).setOutputs(outputsOf({ outputs }).filter(isObject));
    return { cell_id: cell.id, index };
  }

  /**
   * After this run's previous cell (still there), else its last surviving cell,
   * else the `%%agents` cell, looked up now because the user may have moved
   * cells since the run started.
   */
  private placement(cells: readonly ISharedCell[]): IPlacement {
    const ids = cells.map(c => c.id);
    let after = this.last === null ? -1 : ids.indexOf(this.last);
    for (let i = cells.length - 1; after < 0 && i >= 0; i--) {
      if (provenance(cells[i]).run_id === this.run.run_id) {
        after = i;
      }
    }
    if (after < 0 && this.run.anchor !== null) {
      after = ids.indexOf(this.run.anchor);
    }
    if (after >= 0) {
      return { index: after + 1 };
    }
    const note =
      this.run.anchor === null
        ? 'the kernel named no %%agents cell: appended at the end'
        : `the %%agents cell ${this.run.anchor} is gone: appended at the end`;
    return { index: cells.length, note };
  }
}

/**
 * Puts the run's widget back into its `%%agents` cell and trusts that cell, so
 * that the widget renders rather than its text (a widget view is not a safe
 * mimetype, and a notebook with inserted steps is never signed, so it opens
 * with every cell untrusted). `live`: the run is going on, and its widget goes
 * into the cell even if the cell lost it; an ended run's widget is shown only
 * where the cell still has it.
 *
 * Trusting the cell, the page replaces its outputs by the kernel's: the
 * widget's `display`, and for an ended run its static chat (`chat`, sanitised
 * HTML). Of the notebook file's outputs only text stays (the cell's one-line
 * error), as it renders as text: nothing from the file is rendered trusted.
 */
export function show(
  panel: NotebookPanel,
  anchor: string | null,
  display: JSONValue,
  chat: JSONValue,
  live: boolean
): void {
  const view = isObject(display) ? display[WIDGET_VIEW] : undefined;
  const model = panel.model;
  if (anchor === null || !isObject(display) || !isObject(view) || model === null) {
    return;
  }
  const index = model.sharedModel.cells.findIndex(c => c.id === anchor);
  const cell = model.sharedModel.cells[index];
  if (cell === undefined || cell.cell_type !== 'code') {
    return;
  }
  const code = cell as ISharedCodeCell;
  const outputs = code.getOutputs();
  const shows = outputs.some(output => {
    const data = output.data;
    const shown = isObject(data) ? data[WIDGET_VIEW] : undefined;
    return isObject(shown) && shown.model_id === view.model_id;
  });
  const cellModel = model.cells.get(index);
  if (cellModel.id !== anchor || (shows && cellModel.trusted) || (!shows && !live)) {
    return;
  }
  const text = outputs.filter(
    output => output.output_type === 'stream' || output.output_type === 'error'
  );
  const ended = isObject(chat) && isObject(chat.data) ? [chat] : [];
  cellModel.trusted = true;
  code.setOutputs([
    { output_type: 'display_data', data: display, metadata: {} },
    ...ended,
    ...text
  ]);
}
