// The few JupyterLab types this extension uses, declared here instead of
// installing the @jupyterlab packages: the host application provides them at
// run time (shared singletons, never bundled), and the npm registry does not
// always carry every package of the newest JupyterLab release. The shapes follow
// JupyterLab 4's public API, trimmed to what src/index.ts touches.

declare module '@jupyterlab/services' {
  export type JSONValue =
    | string
    | number
    | boolean
    | null
    | JSONValue[]
    | { [key: string]: JSONValue };
  export type JSONObject = { [key: string]: JSONValue };

  export namespace KernelMessage {
    interface IHeader {
      msg_id: string;
      msg_type: string;
      session: string;
      username: string;
    }
    interface IMessage<C> {
      header: IHeader;
      parent_header: IHeader | Record<string, never>;
      metadata: JSONObject;
      content: C;
    }
    type ICommOpenMsg = IMessage<{
      comm_id: string;
      target_name: string;
      data: JSONObject;
    }>;
    type ICommMsgMsg = IMessage<{ comm_id: string; data: JSONObject }>;
    type ICommCloseMsg = IMessage<{ comm_id: string; data: JSONObject }>;
  }

  interface ISignal<T, U> {
    connect(slot: (sender: T, args: U) => void): boolean;
    disconnect(slot: (sender: T, args: U) => void): boolean;
  }

  export namespace Kernel {
    type ConnectionStatus = 'connected' | 'connecting' | 'disconnected';

    interface IComm {
      readonly commId: string;
      readonly isDisposed: boolean;
      onMsg: (msg: KernelMessage.ICommMsgMsg) => void | PromiseLike<void>;
      onClose: (msg: KernelMessage.ICommCloseMsg) => void | PromiseLike<void>;
      open(data?: JSONObject): unknown;
      send(data: JSONObject): unknown;
      close(data?: JSONObject): unknown;
    }
    interface IKernelConnection {
      /** The `session` of every message this connection sends. */
      readonly clientId: string;
      readonly isDisposed: boolean;
      readonly connectionStatus: ConnectionStatus;
      readonly connectionStatusChanged: ISignal<IKernelConnection, ConnectionStatus>;
      /** A comm opened from this side; `open()` sends the comm_open. */
      createComm(targetName: string, commId?: string): IComm;
      registerCommTarget(
        targetName: string,
        callback: (
          comm: IComm,
          msg: KernelMessage.ICommOpenMsg
        ) => void | PromiseLike<void>
      ): void;
    }
  }
}

declare module '@jupyterlab/notebook' {
  import type { JSONObject, Kernel } from '@jupyterlab/services';

  interface ISignal<T, U> {
    connect(slot: (sender: T, args: U) => void): boolean;
    disconnect(slot: (sender: T, args: U) => void): boolean;
  }
  interface Token<T> {
    readonly name: string;
    /** Never set: ties the token to the type it resolves to. */
    readonly _type?: T;
  }

  /** A cell of the collaborative notebook document (@jupyter/ydoc). */
  export interface ISharedCell {
    readonly id: string;
    readonly cell_type: string;
    getSource(): string;
    getMetadata(key?: string): unknown;
  }
  /** A code cell of that document: `cell_type === 'code'`. */
  export interface ISharedCodeCell extends ISharedCell {
    getOutputs(): JSONObject[];
    setOutputs(outputs: JSONObject[]): void;
  }
  export interface ISharedNotebook {
    readonly cells: readonly ISharedCell[];
    insertCell(index: number, cell: Record<string, unknown>): ISharedCell;
  }
  /** A cell's model; `trusted` lets its outputs use renderers that are not safe. */
  export interface ICellModel {
    readonly id: string;
    readonly type: string;
    trusted: boolean;
    getMetadata(key: string): unknown;
  }
  export interface INotebookModel {
    readonly sharedModel: ISharedNotebook;
    readonly cells: {
      readonly length: number;
      get(index: number): ICellModel;
      readonly changed: ISignal<unknown, unknown>;
    };
  }
  /** A cell's widget (@jupyterlab/cells), as the notebook shows it. */
  export interface Cell {
    readonly model: ICellModel;
    readonly node: HTMLElement;
    readonly isDisposed: boolean;
    addClass(name: string): void;
    removeClass(name: string): void;
  }
  /** The notebook widget: its cells' widgets, in order. */
  export interface Notebook {
    readonly node: HTMLElement;
    readonly widgets: readonly Cell[];
    activeCellIndex: number;
    mode: 'command' | 'edit';
    deselectAll(): void;
    scrollToCell(cell: Cell, align?: 'auto' | 'smart' | 'center' | 'start' | 'end'): Promise<void>;
  }
  export interface ISessionContext {
    readonly session: { readonly kernel: Kernel.IKernelConnection | null } | null;
    readonly kernelChanged: ISignal<ISessionContext, unknown>;
  }
  export interface NotebookPanel {
    /** Resolves once the notebook's file is loaded into `model`. */
    readonly context: { readonly ready: Promise<void> };
    readonly content: Notebook;
    readonly node: HTMLElement;
    readonly isDisposed: boolean;
    readonly model: INotebookModel | null;
    readonly sessionContext: ISessionContext;
    readonly disposed: ISignal<NotebookPanel, void>;
  }
  export interface INotebookTracker {
    readonly widgetAdded: ISignal<INotebookTracker, NotebookPanel>;
    readonly currentWidget: NotebookPanel | null;
    forEach(fn: (panel: NotebookPanel) => void): void;
    find(fn: (panel: NotebookPanel) => boolean): NotebookPanel | undefined;
  }
  export const INotebookTracker: Token<INotebookTracker>;
}

declare module '@jupyterlab/application' {
  export interface JupyterFrontEnd {
    /** "JupyterLab" in Lab, "Jupyter Notebook" in Notebook 7. */
    readonly name: string;
  }
  export interface JupyterFrontEndPlugin<T> {
    id: string;
    description?: string;
    autoStart?: boolean;
    requires?: unknown[];
    optional?: unknown[];
    activate: (app: JupyterFrontEnd, ...args: any[]) => T;
  }
}

declare module '@jupyterlab/codeeditor' {
  interface ISignal<T, U> {
    connect(slot: (sender: T, args: U) => void): boolean;
    disconnect(slot: (sender: T, args: U) => void): boolean;
  }
  interface Token<T> {
    readonly name: string;
    readonly _type?: T;
  }

  export namespace CodeEditor {
    /** The text of an editor (@jupyter/ydoc's ISharedText). */
    interface ISharedText {
      readonly changed: ISignal<ISharedText, unknown>;
      getSource(): string;
      setSource(value: string): void;
    }
    interface IModel {
      mimeType: string;
      readonly sharedModel: ISharedText;
      dispose(): void;
    }
    class Model implements IModel {
      constructor(options?: { mimeType?: string });
      mimeType: string;
      readonly sharedModel: ISharedText;
      dispose(): void;
    }
    interface IEditor {
      readonly host: HTMLElement;
      readonly isDisposed: boolean;
      focus(): void;
      dispose(): void;
      setCursorPosition(position: { line: number; column: number }): void;
    }
    interface IOptions {
      host: HTMLElement;
      model: IModel;
      config?: Record<string, unknown>;
    }
  }
  export interface IEditorServices {
    readonly factoryService: {
      newInlineEditor(options: CodeEditor.IOptions): CodeEditor.IEditor;
    };
  }
  export const IEditorServices: Token<IEditorServices>;
}
