"""The window's actions, menus and toolbar (a mixin of :class:`app.ui.main_window.MainWindow`).

Every action calls a public method of the window, so menus, toolbar buttons, shortcuts and tests all go
through the same code.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence, QPalette
from PySide6.QtWidgets import QLabel, QStyle, QToolBar

from app.ui import icons


class WindowActions:
    """Builds ``self.act_*`` QActions, the menu bar and the toolbar; tints the icons with the palette."""

    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        if icon is not None:
            act.setIcon(self.style().standardIcon(icon))
        act.triggered.connect(lambda checked=False: slot())
        return act

    def _build_actions(self) -> None:
        SP = QStyle.StandardPixmap
        self.act_open_model = self._action(
            "Open Checkpoint…", self.open_checkpoint_dialog, QKeySequence.StandardKey.Open,
            "Load a model checkpoint (.lnf)", SP.SP_DialogOpenButton,
        )
        self.act_open_midi = self._action(
            "Open MIDI…", self.open_midi_dialog, "Ctrl+M",
            "Show a MIDI file as a roll and score it under the model (NLL per step)", SP.SP_FileIcon,
        )
        self.act_generate = self._action(
            "Generate", self.generate_panel.request_batch, "Ctrl+G", "Sample a new batch", SP.SP_MediaPlay,
        )
        self.act_reproduce = self._action(
            "Reproduce", self.generate_panel.reproduce, "Ctrl+R", "Generate the last batch again (same seed)",
            SP.SP_BrowserReload,
        )
        self.act_cancel = self._action("Cancel", self.cancel_generation, "Esc", "Stop sampling", SP.SP_BrowserStop)
        self.act_variations = self._action(
            "Variations", self.make_variations, "Ctrl+Shift+V",
            "Sample pieces near the selected one: z = μ + t·σ·ε from its posterior",
        )
        self.act_interpolate = self._action(
            "Interpolate…", self.interpolate_dialog, "Ctrl+I",
            "Morph between two selected pieces through latent space",
        )
        self.act_score = self._action(
            "Score Selected (NLL)", self.score_current, "Ctrl+L",
            "How likely is the selected piece under the model? (nats per step)",
        )
        self.act_play = self._action("Play", self.play, "Space", "Play the selected piece", SP.SP_MediaPlay)
        self.act_stop = self._action("Stop", self.stop, "Shift+Space", "Stop playback", SP.SP_MediaStop)
        self.act_loop = QAction("Loop", self)
        self.act_loop.setCheckable(True)
        self.act_loop.toggled.connect(self.transport.loop_button.setChecked)
        self.transport.loop_button.toggled.connect(self.act_loop.setChecked)
        self.act_export_midi = self._action(
            "Export Selected as MIDI…", self.export_selected_midi_dialog, "Ctrl+E",
            "Save the selected pieces as .mid files", SP.SP_DialogSaveButton,
        )
        self.act_export_all = self._action(
            "Export All as MIDI…", lambda: self.export_dialog(all_pieces=True, kinds=("mid",)), "Ctrl+Shift+E",
            "Save every piece of the gallery as numbered .mid files",
        )
        self.act_export_wav = self._action(
            "Export Selected as WAV…", lambda: self.export_dialog(all_pieces=False, kinds=("wav",)), None,
            "Render the selected pieces to .wav audio",
        )
        self.act_export_all_wav = self._action(
            "Export All as WAV…", lambda: self.export_dialog(all_pieces=True, kinds=("wav",)), None,
            "Render every piece of the gallery to numbered .wav files",
        )
        self.act_export_png = self._action(
            "Export Roll as PNG…", self.export_png_dialog, "Ctrl+Shift+P", "Save the large roll as an image",
        )
        self.act_train = self._action(
            "Train a Model…", self.open_train_window, "Ctrl+T",
            "Train a model on a folder of MIDI files (or a dataset) and watch it learn",
        )
        self.act_train.setIconText("Train…")
        self.act_settings = self._action("Settings…", self.settings_dialog, QKeySequence.StandardKey.Preferences)
        self.act_quit = self._action("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_zoom_in = self._action("Zoom In", self.roll_view.zoom_in, QKeySequence.StandardKey.ZoomIn)
        self.act_zoom_out = self._action("Zoom Out", self.roll_view.zoom_out, QKeySequence.StandardKey.ZoomOut)
        self.act_fit = self._action("Fit Piece", self.roll_view.fit, "Ctrl+0")
        self.act_theme = {}
        for label, mode in (("Follow System", "system"), ("Light", "light"), ("Dark", "dark")):
            act = QAction(label, self)
            act.setCheckable(True)
            act.triggered.connect(lambda checked=False, m=mode: self.set_theme(m))
            self.act_theme[mode] = act
        self.act_about = self._action("About LNF Studio", self.about)
        self._build_edit_actions()

    def _build_edit_actions(self) -> None:
        """Edit menu: note editing in the large roll (app/ui/roll_editor.py) and region regeneration."""
        SK = QKeySequence.StandardKey
        rv, ed = self.roll_view, self.edits
        self.act_undo = self._action("Undo", rv.undo, SK.Undo, "Undo the last edit of the piece")
        self.act_redo = self._action("Redo", rv.redo, None, "Redo the edit undone last")
        self.act_redo.setShortcuts([QKeySequence(SK.Redo), QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_cut = self._action("Cut Notes", rv.cut, SK.Cut)
        self.act_copy = self._action("Copy Notes", rv.copy, SK.Copy)
        self.act_paste = self._action("Paste Notes", rv.paste, SK.Paste, "Paste at the edit cursor (last click)")
        self.act_delete = self._action("Delete Notes", rv.delete_selection, SK.Delete)
        self.act_select_all = self._action("Select All Notes", rv.select_all, SK.SelectAll)
        self.act_region_from_selection = self._action(
            "Region from Selection", rv.region_from_selection, "Ctrl+Shift+A",
            "Mark the time span of the selected notes as the region to regenerate",
        )
        self.act_regenerate = self._action(
            "Regenerate Region", ed.regenerate, "Ctrl+Shift+R",
            "New candidates for the marked region; the notes outside it are kept exactly",
        )
        self.act_continue = self._action("Continue Piece", lambda: ed.extend("continue"), None,
                                         "Extend the piece at its end (bars set in the edit bar)")
        self.act_intro = self._action("Add Intro", lambda: ed.extend("intro"), None,
                                      "Add bars before the piece's start (bars set in the edit bar)")
        # Undo/redo work window-wide (a focused text field keeps its own Ctrl+Z); the note commands' keys are
        # handled by the roll itself when it has focus, so Del in the gallery never deletes notes unseen.
        for act in (self.act_cut, self.act_copy, self.act_paste, self.act_delete, self.act_select_all):
            act.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)

    def _update_edit_actions(self) -> None:
        doc = self.roll_view.doc
        has_doc = doc is not None
        self.act_undo.setEnabled(has_doc and doc.can_undo)
        self.act_redo.setEnabled(has_doc and doc.can_redo)
        self.act_undo.setText(f"Undo {doc.undo_text}" if has_doc and doc.can_undo else "Undo")
        self.act_redo.setText(f"Redo {doc.redo_text}" if has_doc and doc.can_redo else "Redo")
        for act in (self.act_cut, self.act_copy, self.act_paste, self.act_delete, self.act_select_all,
                    self.act_region_from_selection):
            act.setEnabled(has_doc)
        latent = self.loaded is not None and self.loaded.has_latent
        running = self.edits.is_running
        self.act_regenerate.setEnabled(has_doc and latent and not running and self.roll_view.region is not None)
        self.act_continue.setEnabled(has_doc and latent and not running)
        self.act_intro.setEnabled(has_doc and latent and not running)
        self.edits.update_bar()

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.act_open_model, self.act_open_midi])
        m.addSeparator()
        m.addActions([self.act_export_midi, self.act_export_all, self.act_export_wav, self.act_export_all_wav,
                      self.act_export_png])
        m.addSeparator()
        m.addAction(self.act_settings)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo])
        m.addSeparator()
        m.addActions([self.act_cut, self.act_copy, self.act_paste, self.act_delete, self.act_select_all])
        m.addSeparator()
        m.addActions([self.act_region_from_selection, self.act_regenerate, self.act_continue, self.act_intro])
        m = mb.addMenu("&Generate")
        m.addActions([self.act_generate, self.act_reproduce, self.act_cancel])
        m.addSeparator()
        m.addActions([self.act_variations, self.act_interpolate, self.act_score])
        m = mb.addMenu("&Train")
        m.addAction(self.act_train)
        m = mb.addMenu("&Playback")
        m.addActions([self.act_play, self.act_stop, self.act_loop])
        m = mb.addMenu("&View")
        m.addActions([self.act_zoom_in, self.act_zoom_out, self.act_fit])
        m.addSeparator()
        tm = m.addMenu("Theme")
        for act in self.act_theme.values():
            tm.addAction(act)
        m = mb.addMenu("&Help")
        m.addAction(self.act_about)

        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addAction(self.act_open_model)
        tb.addAction(self.act_open_midi)
        tb.addSeparator()
        tb.addAction(self.act_generate)
        tb.addAction(self.act_variations)
        tb.addAction(self.act_interpolate)
        tb.addAction(self.act_score)
        self.act_score.setIconText("Score (NLL)")  # shorter on the toolbar; the menu keeps the full text
        tb.addSeparator()
        tb.addAction(self.act_train)
        tb.addSeparator()
        self._toolbar_proxies: list[tuple[QAction, QAction]] = []
        for source, text in ((self.act_export_midi, "MIDI…"), (self.act_export_wav, "WAV…"),
                             (self.act_export_png, "PNG…")):
            proxy = QAction(text, self)
            proxy.setToolTip(source.toolTip())
            proxy.setIcon(source.icon())
            proxy.triggered.connect(source.trigger)
            source.enabledChanged.connect(proxy.setEnabled)
            proxy.setEnabled(source.isEnabled())
            self._toolbar_proxies.append((source, proxy))
            tb.addAction(proxy)
        export_label = QLabel(" Export: ")
        export_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        tb.insertWidget(self._toolbar_proxies[0][1], export_label)
        self.addToolBar(tb)
        self.toolbar = tb

    def _apply_icons(self) -> None:
        """Tint the vector icons with the current palette (called again when the theme changes)."""
        color = self.palette().color(QPalette.ColorRole.ButtonText)
        accent = self.palette().color(QPalette.ColorRole.Highlight)
        for act, name in ((self.act_generate, "generate"), (self.act_variations, "variations"),
                          (self.act_interpolate, "interpolate"), (self.act_score, "score"),
                          (self.act_play, "play"), (self.act_stop, "stop"), (self.act_train, "train")):
            act.setIcon(icons.icon(name, color))
        self.generate_panel.generate_button.setIcon(icons.icon("generate", accent.lighter(110)))
        self.transport.play_button.setIcon(icons.icon("play", color))
        self.transport.stop_button.setIcon(icons.icon("stop", color))
        self.transport.loop_button.setIcon(icons.icon("loop", color))

