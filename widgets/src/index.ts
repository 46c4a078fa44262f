/**
 * agentnb-cells: writes the steps an `%%agents` cell approved into the notebook
 * as code cells, below that cell, in JupyterLab 4 and Notebook 7.
 *
 * The kernel opens a comm on target `agentnb.cells` from the `%%agents` cell and
 * sends one `insert` per approved step; README.md describes the protocol.
 */
import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  INotebookTracker,
  type ISharedCell,
  type NotebookPanel
} from '@jupyterlab/notebook';
import type { JSONObject, Kernel, KernelMessage } from '@jupyterlab/services';

const TARGET = 'agentnb.cells';
const VERSION = 1;

interface IOpenData {
  anchor: string | null;
  run_id: string;
  version: number;
}

interface IPlacement {
  index: number;
  note?: string;
}

function provenance(cell: ISharedCell): JSONObject {
  const meta = cell.getMetadata('agentnb');
  return meta !== null && typeof meta === 'object' ? (meta as JSONObject) : {};
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The cells of one run: where they go, and that each lands once. */
class RunWriter {
  private last: string | null = null;

  constructor(
    private readonly panel: NotebookPanel,
    private readonly run: IOpenData
  ) {}

  handle(data: JSONObject): JSONObject {
    const key = typeof data.key === 'string' ? data.key : null;
    if (data.action !== 'insert' || key === null) {
      const message = 'expected {action: "insert", key, cell}';
      return { event: 'error', key, message };
    }
    try {
      return { event: 'inserted', key, ...this.insert(key, data.cell as JSONObject) };
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
    // The key is the de-duplication: a step re-sent, or already in a notebook
    // that was saved and re-opened, is reported where it is, not added again.
    const existing = notebook.cells.findIndex(c => provenance(c).key === key);
    if (existing >= 0) {
      this.last = notebook.cells[existing].id;
      return { cell_id: this.last, index: existing, duplicate: true };
    }
    const { index, note } = this.placement(notebook.cells);
    const source = cell.source;
    const metadata = (cell.metadata ?? {}) as JSONObject;
    const tags = (metadata.agentnb ?? {}) as JSONObject;
    // Through the shared model, not a notebook command: the active cell, the
    // focus and the scroll position stay where the user has them (the notebook
    // widget shifts its active index past cells inserted above it).
    const created = notebook.insertCell(index, {
      cell_type: 'code',
      source: Array.isArray(source) ? source.join('') : String(source ?? ''),
      outputs: Array.isArray(cell.outputs) ? cell.outputs : [],
      metadata: { ...metadata, agentnb: { ...tags, key } },
      execution_count: null
    });
    this.last = created.id;
    return note === undefined
      ? { cell_id: created.id, index }
      : { cell_id: created.id, index, note };
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

function opened(
  panel: NotebookPanel,
  kernel: Kernel.IKernelConnection,
  client: string,
  comm: Kernel.IComm,
  msg: KernelMessage.ICommOpenMsg
): void {
  // Under real-time collaboration every browser on this kernel sees the open;
  // only the one whose execute_request ran the cell writes. The others leave
  // the comm alone: closing it here would close it for the kernel too.
  const parent = msg.parent_header as Partial<KernelMessage.IHeader>;
  if (parent.session !== kernel.clientId) {
    return;
  }
  const run = msg.content.data as unknown as IOpenData;
  if (run.version !== VERSION) {
    comm.send({
      event: 'error',
      key: null,
      message: `agentnb-cells speaks protocol version ${VERSION}, not ${String(run.version)}`
    });
    comm.close();
    return;
  }
  const writer = new RunWriter(panel, run);
  comm.onMsg = message => {
    comm.send(writer.handle(message.content.data));
  };
  comm.send({ event: 'ready', client, version: VERSION });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'agentnb-cells:plugin',
  description: 'Inserts the steps an %%agents cell approved as code cells below it.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker): void => {
    const client = /notebook/i.test(app.name) ? 'notebook' : 'lab';
    const watch = (panel: NotebookPanel): void => {
      // A restart keeps the kernel connection and its targets; choosing
      // another kernel makes a new connection, which needs the target again.
      const register = (): void => {
        const kernel = panel.sessionContext.session?.kernel;
        kernel?.registerCommTarget(TARGET, (comm, msg) =>
          opened(panel, kernel, client, comm, msg)
        );
      };
      register();
      panel.sessionContext.kernelChanged.connect(register);
    };
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_, panel) => watch(panel));
  }
};

export default plugin;
