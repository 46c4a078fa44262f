/**
 * agentnb-cells: writes the steps an `%%agents` cell approved into the notebook
 * as cells below that cell (each step's reason, its code, the final report),
 * in JupyterLab 4 and Notebook 7; marks those cells as agentnb's; gives the
 * chat widget's code editor CodeMirror; and styles the chat's static copy.
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
import { IEditorServices } from '@jupyterlab/codeeditor';
import {
  INotebookTracker,
  type ISharedCell,
  type NotebookPanel
} from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { RunWriter, show } from './cells';
import { watchEditors } from './editor';
import { listenForJumps, watchMarks } from './marks';

const TARGET = 'agentnb.cells';
const VERSION = 4;
/** The versions of a kernel's open this extension answers, in that version. */
const SPOKEN = [1, 2, 3, 4];

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
        show(panel, anchor, data.display ?? null, data.chat ?? null, live);
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
  optional: [IEditorServices],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    services: IEditorServices | null
  ): void => {
    const client = /notebook/i.test(app.name) ? 'notebook' : 'lab';
    listenForJumps(tracker);
    const watch = (panel: NotebookPanel): void => {
      watchMarks(panel);
      if (services !== null) {
        watchEditors(panel, services);
      }
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
