"""A plain Gradio app, with nothing AiKore-specific in it: it takes its address from Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT and its public root from GRADIO_ROOT_PATH, as third-party
WebUIs do. A streaming output, an upload, and a chat."""

import hashlib
import time

import gradio as gr


def count(n):
    text = ""
    for i in range(1, int(n) + 1):
        text += f"tick {i}\n"
        yield text
        time.sleep(0.3)


def describe(path):
    if not path:
        return ""
    with open(path, "rb") as fh:
        data = fh.read()
    return f"{len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}"


def reply(message, history):
    return f"echo: {message}"


with gr.Blocks(title="Gradio under AiKore") as demo:
    with gr.Row():
        steps = gr.Number(value=5, label="Steps", elem_id="steps")
        ticks = gr.Textbox(label="Ticks", elem_id="ticks", lines=6)
    gr.Button("Count", elem_id="count").click(count, steps, ticks)
    upload = gr.File(label="Upload", elem_id="upload", type="filepath")
    info = gr.Textbox(label="Upload info", elem_id="upload-info")
    upload.upload(describe, upload, info)
    gr.ChatInterface(reply)

demo.queue().launch()
