package dev.lazypages.perf.suite;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.AffineTransform;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.DoubleFunction;
import javax.imageio.ImageIO;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;

/**
 * PNG charts drawn with Java2D (headless): a percentile distribution of latency histograms (the
 * x axis log-scaled as in HdrHistogram's plotter: 0%, 90%, 99%, 99.9%, ...; the y axis log-scaled
 * in µs), and line charts of (x, y) series (downtime against memory size, transfer rate over
 * time). Every chart has a title, labelled axes with ticks and grid lines, and a legend.
 */
public final class Charts {
    public static final int WIDTH = 1000;
    public static final int HEIGHT = 600;
    private static final Color[] PALETTE = {new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e),
        new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x17becf), new Color(0x7f7f7f)};
    private static final int LEFT = 95;
    private static final int RIGHT = 30;
    private static final int TOP = 55;
    private static final int BOTTOM = 75;

    static {
        System.setProperty("java.awt.headless", "true");
    }

    private Charts() {
    }

    /** One line: its label and points (x, y) in the chart's units. */
    public record Line(String label, List<double[]> points) {
    }

    /** An axis: its label, range, whether log10-scaled, and how a tick value is printed. */
    private record Axis(String label, double min, double max, boolean log, List<Double> ticks, DoubleFunction<String> format) {
        double fraction(double v) {
            return log ? (Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min)) : (v - min) / (max - min);
        }
    }

    /**
     * The percentile distribution of each histogram (values in ns, drawn in µs), all on one chart.
     * x is log10(1 / (1 - percentile)); the last point of each line is its maximum, drawn at
     * 1 - 1/count.
     */
    public static void percentiles(Path png, String title, List<String> labels, List<Histogram> histograms) throws IOException {
        List<Line> lines = new ArrayList<>();
        double maxX = 2; // at least 99%
        for (int i = 0; i < histograms.size(); i++) {
            Line l = percentileLine(labels.get(i), histograms.get(i));
            lines.add(l);
            for (double[] p : l.points()) {
                maxX = Math.max(maxX, p[0]);
            }
        }
        int decades = (int) Math.ceil(maxX - 1e-9);
        List<Double> xTicks = new ArrayList<>(List.of(0.0, Math.log10(2)));
        for (int d = 1; d <= decades; d++) {
            xTicks.add((double) d);
        }
        Axis x = new Axis("percentile", 0, decades, false, xTicks, Charts::percentileLabel);
        double[] yr = range(lines, 1);
        Axis y = logAxis("latency (µs)", yr[0], yr[1]);
        draw(png, title, x, y, lines);
    }

    static Line percentileLine(String label, Histogram h) {
        List<double[]> pts = new ArrayList<>();
        long count = h.getTotalCount();
        if (count == 0) {
            return new Line(label + " (empty)", pts);
        }
        double top = Math.log10((double) count); // 1/(1 - (1 - 1/count))
        for (HistogramIterationValue v : h.percentiles(5)) {
            double p = v.getPercentileLevelIteratedTo() / 100.0;
            double xv = p >= 1 ? top : Math.min(top, Math.log10(1 / (1 - p)));
            pts.add(new double[] {xv, Math.max(h.highestEquivalentValue(v.getValueIteratedTo()) / 1000.0, 0.001)});
            if (p >= 1) {
                break;
            }
        }
        return new Line(label, pts);
    }

    private static String percentileLabel(double x) {
        if (x == 0) {
            return "0%";
        }
        double p = 100 * (1 - Math.pow(10, -x));
        if (Math.abs(p - Math.rint(p)) < 1e-6) {
            return String.format(Locale.ROOT, "%.0f%%", p);
        }
        String s = String.format(Locale.ROOT, "%.6f", p).replaceAll("0+$", "");
        return s + "%";
    }

    /** Line chart of (x, y) series; {@code logX} ({@code logY}) draws x (y) on a log scale. */
    public static void lines(Path png, String title, String xLabel, String yLabel, List<Line> lines, boolean logX, boolean logY)
            throws IOException {
        double[] xr = range(lines, 0);
        double[] yr = range(lines, 1);
        Axis x = logX && xr[0] > 0 ? logAxis(xLabel, xr[0], xr[1]) : linearAxis(xLabel, Math.min(0, xr[0]), xr[1]);
        if (logX && xr[0] > 0) { // ticks at the data's own x values (e.g. 256, 1024, 4096)
            List<Double> ticks = lines.stream().flatMap(l -> l.points().stream()).map(p -> p[0]).distinct().sorted().toList();
            x = new Axis(xLabel, xr[0] / 1.25, xr[1] * 1.25, true, ticks, Charts::number);
        }
        Axis y = logY && yr[0] > 0 ? logAxis(yLabel, yr[0], yr[1]) : linearAxis(yLabel, Math.min(0, yr[0]), yr[1]);
        draw(png, title, x, y, lines);
    }

    private static double[] range(List<Line> lines, int coord) {
        double lo = Double.POSITIVE_INFINITY;
        double hi = Double.NEGATIVE_INFINITY;
        for (Line l : lines) {
            for (double[] p : l.points()) {
                lo = Math.min(lo, p[coord]);
                hi = Math.max(hi, p[coord]);
            }
        }
        if (lo > hi) {
            return new double[] {0, 1};
        }
        return new double[] {lo, hi};
    }

    private static Axis linearAxis(String label, double lo, double hi) {
        if (hi <= lo) {
            hi = lo + 1;
        }
        double step = niceStep((hi - lo) / 6);
        double min = Math.floor(lo / step) * step;
        double max = Math.ceil(hi / step) * step;
        if (max <= hi) {
            max += step * (hi == max ? 0 : 1);
        }
        List<Double> ticks = new ArrayList<>();
        for (double t = min; t <= max + step / 1e6; t += step) {
            ticks.add(Math.abs(t) < step / 1e6 ? 0 : t);
        }
        return new Axis(label, min, max, false, ticks, Charts::number);
    }

    private static Axis logAxis(String label, double lo, double hi) {
        lo = Math.max(lo, 1e-3);
        hi = Math.max(hi, lo * 10);
        double min = Math.pow(10, Math.floor(Math.log10(lo)));
        double max = Math.pow(10, Math.ceil(Math.log10(hi)));
        List<Double> ticks = new ArrayList<>();
        for (double t = min; t <= max * 1.0001; t *= 10) {
            ticks.add(t);
            if (max / min <= 1000) {
                if (t * 2 < max) {
                    ticks.add(t * 2);
                }
                if (t * 5 < max) {
                    ticks.add(t * 5);
                }
            }
        }
        return new Axis(label, min, max, true, ticks, Charts::number);
    }

    /** 1, 2 or 5 times a power of ten, at least {@code raw}. */
    static double niceStep(double raw) {
        double p = Math.pow(10, Math.floor(Math.log10(raw)));
        for (double m : new double[] {1, 2, 5, 10}) {
            if (m * p >= raw) {
                return m * p;
            }
        }
        return 10 * p;
    }

    static String number(double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e15) {
            return String.format(Locale.ROOT, Math.abs(v) >= 10_000 ? "%,d" : "%d", (long) v);
        }
        if (Math.abs(v) >= 0.01) {
            return String.format(Locale.ROOT, "%.2f", v).replaceAll("0+$", "").replaceAll("\\.$", "");
        }
        return String.format(Locale.ROOT, "%.3g", v);
    }

    private static void draw(Path png, String title, Axis x, Axis y, List<Line> lines) throws IOException {
        BufferedImage img = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        try {
            g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
            g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
            g.setColor(Color.WHITE);
            g.fillRect(0, 0, WIDTH, HEIGHT);
            int pw = WIDTH - LEFT - RIGHT;
            int ph = HEIGHT - TOP - BOTTOM;

            g.setColor(Color.BLACK);
            g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 18));
            centered(g, title, WIDTH / 2, 30);

            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            FontMetrics fm = g.getFontMetrics();
            for (double t : x.ticks()) {
                double f = x.fraction(t);
                if (f < -1e-9 || f > 1 + 1e-9) {
                    continue;
                }
                int px = LEFT + (int) Math.round(f * pw);
                g.setColor(new Color(0xe0e0e0));
                g.drawLine(px, TOP, px, TOP + ph);
                g.setColor(Color.DARK_GRAY);
                g.drawLine(px, TOP + ph, px, TOP + ph + 5);
                centered(g, x.format().apply(t), px, TOP + ph + 8 + fm.getAscent());
            }
            for (double t : y.ticks()) {
                double f = y.fraction(t);
                if (f < -1e-9 || f > 1 + 1e-9) {
                    continue;
                }
                int py = TOP + ph - (int) Math.round(f * ph);
                g.setColor(new Color(0xe0e0e0));
                g.drawLine(LEFT, py, LEFT + pw, py);
                g.setColor(Color.DARK_GRAY);
                g.drawLine(LEFT - 5, py, LEFT, py);
                String s = y.format().apply(t);
                g.drawString(s, LEFT - 8 - fm.stringWidth(s), py + fm.getAscent() / 2 - 1);
            }
            g.setColor(Color.BLACK);
            g.drawRect(LEFT, TOP, pw, ph);
            g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 14));
            centered(g, x.label() + (x.log() && !x.label().equals("percentile") ? " (log scale)" : ""), LEFT + pw / 2, HEIGHT - 18);
            AffineTransform saved = g.getTransform();
            g.rotate(-Math.PI / 2);
            centered(g, y.label() + (y.log() ? " (log scale)" : ""), -(TOP + ph / 2), 22);
            g.setTransform(saved);

            g.setClip(LEFT, TOP, pw + 1, ph + 1);
            for (int i = 0; i < lines.size(); i++) {
                Line l = lines.get(i);
                g.setColor(PALETTE[i % PALETTE.length]);
                g.setStroke(new BasicStroke(2.2f));
                Path2D path = new Path2D.Double();
                boolean first = true;
                for (double[] p : l.points()) {
                    double px = LEFT + x.fraction(p[0]) * pw;
                    double py = TOP + ph - y.fraction(p[1]) * ph;
                    if (first) {
                        path.moveTo(px, py);
                        first = false;
                    } else {
                        path.lineTo(px, py);
                    }
                    if (l.points().size() <= 40) {
                        g.fillOval((int) px - 4, (int) py - 4, 8, 8);
                    }
                }
                g.draw(path);
            }
            g.setClip(null);
            legend(g, lines, x, y, pw, ph);
        } finally {
            g.dispose();
        }
        ImageIO.write(img, "png", png.toFile());
    }

    /** The legend, in the corner of the plot that covers the fewest points (top left on a tie). */
    private static void legend(Graphics2D g, List<Line> lines, Axis xa, Axis ya, int pw, int ph) {
        if (lines.isEmpty()) {
            return;
        }
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 13));
        FontMetrics fm = g.getFontMetrics();
        int w = lines.stream().mapToInt(l -> fm.stringWidth(l.label())).max().orElse(0) + 44;
        int rowH = fm.getHeight() + 2;
        int h = rowH * lines.size() + 8;
        int[][] corners = {{LEFT + 12, TOP + 12}, {LEFT + pw - 12 - w, TOP + 12}, {LEFT + pw - 12 - w, TOP + ph - 12 - h},
            {LEFT + 12, TOP + ph - 12 - h}};
        int best = 0;
        long bestCount = Long.MAX_VALUE;
        for (int c = 0; c < corners.length; c++) {
            int cx = corners[c][0];
            int cy = corners[c][1];
            long n = 0;
            for (Line l : lines) {
                for (double[] p : l.points()) {
                    double px = LEFT + xa.fraction(p[0]) * pw;
                    double py = TOP + ph - ya.fraction(p[1]) * ph;
                    if (px >= cx - 6 && px <= cx + w + 6 && py >= cy - 6 && py <= cy + h + 6) {
                        n++;
                    }
                }
            }
            if (n < bestCount) {
                best = c;
                bestCount = n;
            }
        }
        int x = corners[best][0];
        int y = corners[best][1];
        g.setColor(new Color(255, 255, 255, 230));
        g.fillRect(x, y, w, h);
        g.setColor(Color.GRAY);
        g.setStroke(new BasicStroke(1f));
        g.drawRect(x, y, w, h);
        for (int i = 0; i < lines.size(); i++) {
            int ly = y + 4 + rowH * i + rowH / 2;
            g.setColor(PALETTE[i % PALETTE.length]);
            g.setStroke(new BasicStroke(3f));
            g.drawLine(x + 8, ly, x + 32, ly);
            g.setColor(Color.BLACK);
            g.drawString(lines.get(i).label(), x + 38, ly + fm.getAscent() / 2 - 1);
        }
    }

    private static void centered(Graphics2D g, String s, int cx, int baseline) {
        g.drawString(s, cx - g.getFontMetrics().stringWidth(s) / 2, baseline);
    }
}
