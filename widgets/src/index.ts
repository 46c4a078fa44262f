/**
 * agentnb-cells: writes the steps an `%%agents` cell approved into the notebook
 * as code cells, below that cell, in JupyterLab 4 and Notebook 7.
 *
 * The kernel opens a comm on target `agentnb.cells` from the `%%agents` cell and
 * sends one `insert` per approved step. A page that did not run the cell (the
 * tab was closed and the notebook opened again, or the page reloaded) opens a
 * comm on the kernel's target of the same name when its kernel connection comes
 * up, and the kernel attaches the runs going on to it. README.md describes the
 * protocol.
 */
import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  INotebookTracker,
  type ISharedCell,
  type ISharedCodeCell,
  type NotebookPanel
} from '@jupyterlab/notebook';
import type {
  JSONObject,
  JSONValue,
  Kernel,
  KernelMessage
} from '@jupyterlab/services';

const TARGET = 'agentnb.cells';
const VERSION = 2;
/** The versions of a kernel's open this extension answers, in that version. */
const SPOKEN = [1, 2];
const WIDGET_VIEW = 'application/vnd.jupyter.widget-view+json';

interface IRun {
  anchor: string | null;
  run_id: string;
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

function isObject(value: JSONValue | undefined): value is JSONObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The cells of one run: where they go, and that each lands once. */
class RunWriter {
  private last: string | null = null;

  constructor(
    private readonly panel: NotebookPanel,
    private readonly run: IRun
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
    // Never trusted, whatever the kernel sent: model-written code made the
    // outputs, and a trusted cell would run the script they might carry.
    const metadata = { ...((cell.metadata ?? {}) as JSONObject) };
    delete metadata.trusted;
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
  const data = msg.content.data;
  const version = data.version;
  if (typeof version !== 'number' || !SPOKEN.includes(version)) {
    comm.send({
      event: 'error',
      key: null,
      message: `agentnb-cells speaks protocol versions ${SPOKEN.join(', ')}, not ${String(version)}`
    });
    comm.close();
    return;
  }
  const anchor = typeof data.anchor === 'string' ? data.anchor : null;
  const writer = new RunWriter(panel, { anchor, run_id: String(data.run_id) });
  comm.onMsg = message => {
    comm.send(writer.handle(message.content.data));
  };
  // an older kernel is answered in its own version, which it checks
  comm.send({ event: 'ready', client, version });
}

function isAgentsCell(cell: ISharedCell): boolean {
  return cell.cell_type === 'code' && /^\s*%%agents\b/.test(cell.getSource());
}

/**
 * Puts the run's widget back into its `%%agents` cell and trusts that cell, so
 * that the widget renders rather than its text (a widget view is not a safe
 * mimetype, and a notebook with inserted steps is never signed, so it opens
 * with every cell untrusted). `live`: the run is going on, and its widget goes
 * into the cell even if the cell lost it; an ended run's widget is shown only
 * where the cell still has it.
 */
function show(
  panel: NotebookPanel,
  anchor: string | null,
  display: JSONValue,
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
  // Trusted with the kernel's display, not the notebook file's copy of it;
  // text outputs (the cell's one-line error) stay, as they render as text.
  const text = outputs.filter(
    output => output.output_type === 'stream' || output.output_type === 'error'
  );
  cellModel.trusted = true;
  code.setOutputs([
    { output_type: 'display_data', data: display, metadata: {} },
    ...text
  ]);
}

/**
 * Asks the kernel for the `%%agents` runs going on in this notebook that this
 * page did not start. Only for notebooks with an `%%agents` cell: a kernel
 * without agentnb loaded logs the unknown target and closes the comm.
 */
function attach(
  panel: NotebookPanel,
  kernel: Kernel.IKernelConnection,
  client: string
): void {
  const model = panel.model;
  if (panel.isDisposed || kernel.isDisposed || model === null) {
    return;
  }
  const cells = model.sharedModel.cells;
  if (!cells.some(isAgentsCell)) {
    return;
  }
  const comm = kernel.createComm(TARGET);
  const writers = new Map<string, RunWriter>();
  comm.onMsg = message => {
    const data = message.content.data;
    const runId = typeof data.run_id === 'string' ? data.run_id : null;
    const live = data.action === 'attach';
    if ((live || data.action === 'show') && runId !== null) {
      const anchor = typeof data.anchor === 'string' ? data.anchor : null;
      if (live) {
        writers.set(runId, new RunWriter(panel, { anchor, run_id: runId }));
      }
      try {
        show(panel, anchor, data.display ?? null, live);
      } catch (error) {
        console.warn(`agentnb-cells: the widget of run ${runId} was not shown:`, error);
      }
      return;
    }
    const writer = runId === null ? undefined : writers.get(runId);
    if (writer === undefined) {
      const key = typeof data.key === 'string' ? data.key : null;
      comm.send({ event: 'error', key, message: `no run ${String(runId)} attached here` });
      return;
    }
    comm.send(writer.handle(data));
  };
  comm.open({ version: VERSION, client, cells: cells.map(c => c.id) });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'agentnb-cells:plugin',
  description: 'Inserts the steps an %%agents cell approved as code cells below it.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker): void => {
    const client = /notebook/i.test(app.name) ? 'notebook' : 'lab';
    const watch = (panel: NotebookPanel): void => {
      let kernel: Kernel.IKernelConnection | null = null;
      const connected = (
        connection: Kernel.IKernelConnection,
        status: Kernel.ConnectionStatus
      ): void => {
        if (status === 'connected') {
          void panel.context.ready.then(() => attach(panel, connection, client));
        }
      };
      // A restart keeps the kernel connection and its targets; choosing
      // another kernel makes a new connection, which needs the target again.
      // Each time a connection comes up (the page opened, the socket came back)
      // the page asks for the runs it did not start.
      const register = (): void => {
        kernel?.connectionStatusChanged.disconnect(connected);
        kernel = panel.sessionContext.session?.kernel ?? null;
        if (kernel === null) {
          return;
        }
        const connection = kernel;
        connection.registerCommTarget(TARGET, (comm, msg) =>
          opened(panel, connection, client, comm, msg)
        );
        connection.connectionStatusChanged.connect(connected);
        connected(connection, connection.connectionStatus);
      };
      register();
      panel.sessionContext.kernelChanged.connect(register);
      panel.disposed.connect(() => {
        kernel?.connectionStatusChanged.disconnect(connected);
        panel.sessionContext.kernelChanged.disconnect(register);
      });
    };
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_, panel) => watch(panel));
  }
};

export default plugin;
