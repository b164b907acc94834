"""Rendering: FaceVerse meshes from 58-d coefficients, a torch rasteriser (grey frames), PIRender, mp4 output."""
